-- Local development only (docker-compose.yml mounts this file into
-- /docker-entrypoint-initdb.d/). It runs once, when the postgres data volume
-- is first created, as $POSTGRES_USER, who then owns every database.
-- One database per service, so each service keeps its own schema and
-- alembic history.
CREATE DATABASE intake;
CREATE DATABASE scheduling;
CREATE DATABASE outcomes;
