"""Run an HTTP server (a service, the bench baseline) as a real process on a free port."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tooling.ports import free_port

ROOT = Path(__file__).resolve().parents[1]


class ServerError(RuntimeError):
    """A server that would not start or that died."""


class HTTPProcess:
    """`python <argv>` serving HTTP on 127.0.0.1, its output kept in a log file."""

    def __init__(
        self,
        label: str,
        argv: list[str],
        env: dict[str, str],
        port: int,
        *,
        ready_path: str = "/healthz",
    ) -> None:
        self.label, self.argv, self.port, self.ready_path = label, argv, port, ready_path
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix=f"{label}-", suffix=".log")  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> HTTPProcess:
        self.process = subprocess.Popen(
            [sys.executable, *self.argv],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"{self.label} exited at start:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}{self.ready_path}", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise ServerError(f"{self.label} did not answer {self.ready_path} in {timeout:.0f}s")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the server printed, for error messages."""
        self.log.flush()
        text = Path(self.log.name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def __enter__(self) -> HTTPProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class ServiceProcess(HTTPProcess):
    """`python -m services.<name> serve` with the given settings as environment variables."""

    def __init__(
        self,
        name: str,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        **settings: str,
    ) -> None:
        port = port or free_port()
        prefix = f"{name.upper()}_"
        service_env = {
            f"{prefix}PORT": str(port),
            f"{prefix}HOST": "127.0.0.1",
            f"{prefix}LOG_LEVEL": "warning",
            **{f"{prefix}{key.upper()}": value for key, value in settings.items()},
            **(env or {}),
        }
        super().__init__(
            name, ["-m", f"services.{name}", "serve"], service_env, port, ready_path="/readyz"
        )
        self.name = name
