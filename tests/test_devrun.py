"""`make run`'s launcher stops every child it started, however many signals arrive."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tooling.ports import free_port
from tooling.service_process import ROOT

NAMES = ("intake", "scheduling", "outcomes")


def _children(pid: int) -> list[int]:
    """The launcher's direct children (the broker and the services)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    """Running, not merely a zombie that nobody has reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_second_signal_during_clean_up_still_stops_every_child(
    tmp_path: Path, second: signal.Signals
):
    ports = {name: free_port() for name in NAMES}
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["DEVRUN_BROKER_PORT"] = str(free_port())
    issuer_port = free_port()
    env["DEVRUN_ISSUER_PORT"] = str(issuer_port)
    env["DEVRUN_AUTH_DIR"] = str(tmp_path / "dev-auth")
    for name, port in ports.items():
        prefix = name.upper()
        env |= {
            f"{prefix}_PORT": str(port),
            f"{prefix}_DATA_DIR": str(tmp_path),
            f"{prefix}_RESYNC_ON_START": "false",
            f"{prefix}_LOG_LEVEL": "warning",
        }
    log = (tmp_path / "devrun.log").open("w")
    # In a session of its own, like make and its children in a terminal.
    launcher = subprocess.Popen(
        [sys.executable, "-m", "tooling.devrun"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    children: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while not all(_ready(port) for port in ports.values()):
            assert launcher.poll() is None, (tmp_path / "devrun.log").read_text()
            assert time.monotonic() < deadline, "the services did not start"
            time.sleep(0.3)
        children = _children(launcher.pid)
        assert len(children) == 5  # the broker, the issuer and three services
        # Each service was given its own client of the issuer, whose key the issuer made.
        for name in NAMES:
            key_file = tmp_path / "dev-auth" / f"kemdr-{name}.pem"
            assert key_file.stat().st_mode & 0o777 == 0o600
        environ = b"".join(Path(f"/proc/{pid}/environ").read_bytes() for pid in children)
        assert b"SCHEDULING_AUTH_CLIENT_ID=kemdr-scheduling\0" in environ
        assert f"INTAKE_AUTH_ISSUER=http://127.0.0.1:{issuer_port}\0".encode() in environ
        metadata = httpx.get(f"http://127.0.0.1:{issuer_port}/.well-known/smart-configuration")
        assert metadata.json()["token_endpoint"] == f"http://127.0.0.1:{issuer_port}/token"
        # The clinician pages sign in at the issuer, their moved port's callback registered.
        login = httpx.get(f"http://127.0.0.1:{ports['outcomes']}/app/login")
        assert login.status_code == 303, login.text
        assert login.headers["location"].startswith(f"http://127.0.0.1:{issuer_port}/authorize?")
        assert httpx.get(login.headers["location"]).status_code == 200  # the login form
        # Ctrl-C reaches the whole process group; then a second signal during the clean-up.
        os.killpg(launcher.pid, signal.SIGINT)
        time.sleep(0.2)
        os.killpg(launcher.pid, second)
        launcher.wait(timeout=60)
        # When the launcher is gone, so is everything it started, and the ports are free.
        assert [pid for pid in children if _alive(pid)] == []
        assert [port for port in [*ports.values(), issuer_port] if _listening(port)] == []
    finally:
        for pid in [launcher.pid, *children]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        launcher.wait(timeout=10)
        log.close()
