# syntax=docker/dockerfile:1
#
# One image for all three FHIR services (intake, scheduling, outcomes).
# The default command runs intake; docker-compose.yml and deploy/k8s/ override
# the command per service:
#   python -m services.<name> serve     # HTTP server
#   python -m services.<name> migrate   # apply database migrations, then exit
#
# No secrets are baked in: database URLs and passwords come from the
# environment at run time.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build stage: install the project and its dependencies into a venv -------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY . .
# Drop the in-tree build leftovers so they are not copied into the image.
RUN pip install . && rm -rf build ./*.egg-info

# --- runtime stage -------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# Containers must listen on all interfaces (the app default is 127.0.0.1).
# HEALTHCHECK_PORT is read only by the HEALTHCHECK below (the default command
# runs intake on 8001); docker-compose.yml defines its own healthcheck per
# service and Kubernetes ignores HEALTHCHECK in favour of its probes.
# matplotlib (outcomes' charts) keeps its font cache in MPLCONFIGDIR: the home
# directory is read-only; /tmp is the writable tmpfs of compose and deploy/k8s/.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    INTAKE_HOST=0.0.0.0 \
    SCHEDULING_HOST=0.0.0.0 \
    OUTCOMES_HOST=0.0.0.0 \
    HEALTHCHECK_PORT=8001 \
    MPLCONFIGDIR=/tmp/matplotlib

# Fixed numeric UID/GID so Kubernetes can verify runAsNonRoot.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv

# The source tree is also kept in /app (owned by root, read-only for the app
# user) so files that live next to the packages (e.g. alembic.ini, migrations)
# are found when running from the working directory.
WORKDIR /app
COPY --from=build /src /app
# var/ holds the embedded SQLite database when no <P>DATABASE_URL is set.
RUN mkdir -p /app/var && chown app:app /app/var

USER 10001:10001

EXPOSE 8001 8002 8003

# python:3.11-slim has no curl; urlopen raises (non-zero exit) on errors and
# on non-2xx answers.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HEALTHCHECK_PORT', '8001'), timeout=4)"]

CMD ["python", "-m", "services.intake", "serve"]
