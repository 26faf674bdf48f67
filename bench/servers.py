"""Real uvicorn processes (one worker each) on free ports, started and stopped by the bench."""

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
LOG_LEVEL = "warning"  # no access log, for the service and the baseline alike


class ServerError(RuntimeError):
    """A server that would not start or that died."""


class Server:
    """One `python -m <module>` process serving HTTP on 127.0.0.1."""

    def __init__(self, label: str, argv: list[str], env: dict[str, str], port: int) -> None:
        self.label, self.argv, self.port = label, argv, port
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{label}-", suffix=".log")  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Server:
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
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise ServerError(f"{self.label} did not answer /healthz in {timeout:.0f}s")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        self.log.flush()
        text = Path(self.log.name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def outcomes_service(database_url: str) -> Server:
    """The outcomes service as deployed: `python -m services.outcomes serve`."""
    port = free_port()
    env = {
        "OUTCOMES_DATABASE_URL": database_url,
        "OUTCOMES_HOST": "127.0.0.1",
        "OUTCOMES_PORT": str(port),
        "OUTCOMES_MIGRATE_ON_START": "false",
        "OUTCOMES_LOG_LEVEL": LOG_LEVEL,
        # No broker: the outbox fills in each write's transaction, nothing is relayed.
        "KAFKA_BOOTSTRAP_SERVERS": "",
    }
    return Server("outcomes", ["-m", "services.outcomes", "serve"], env, port)


def baseline_server() -> Server:
    port = free_port()
    env = {
        "BENCH_BASELINE_HOST": "127.0.0.1",
        "BENCH_BASELINE_PORT": str(port),
        "BENCH_BASELINE_LOG_LEVEL": LOG_LEVEL,
    }
    return Server("baseline", ["-m", "bench.baseline"], env, port)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far (Linux /proc/stat)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]
    return sum(ticks) - idle, sum(ticks)
