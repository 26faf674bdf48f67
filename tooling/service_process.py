"""Run a service as a real uvicorn process on a free port (tests, benchmarks)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tooling.ports import free_port

ROOT = Path(__file__).resolve().parents[1]


class ServiceProcess:
    """`python -m services.<name> serve` with the given settings as environment variables."""

    def __init__(
        self,
        name: str,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        **settings: str,
    ) -> None:
        self.name = name
        self.port = port or free_port()
        prefix = f"{name.upper()}_"
        self.env = {
            **os.environ,
            f"{prefix}PORT": str(self.port),
            f"{prefix}HOST": "127.0.0.1",
            f"{prefix}LOG_LEVEL": "warning",
            **{f"{prefix}{key.upper()}": value for key, value in settings.items()},
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> ServiceProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}", "serve"],
            cwd=ROOT,
            env=self.env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"{self.name} did not become ready in {timeout} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
