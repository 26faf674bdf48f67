"""`make run`: every service on the embedded defaults, logs prefixed, Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from typing import IO

from tooling.broker import Broker

SERVICES = (("intake", 8001), ("scheduling", 8002), ("outcomes", 8003))
COLOURS = ("\033[36m", "\033[35m", "\033[33m")
RESET = "\033[0m"
DEV_BROKER_PORT = 9092


def _pump(name: str, colour: str, stream: IO[str]) -> None:
    prefix = f"{colour}{name:<10}{RESET}| " if sys.stdout.isatty() else f"{name:<10}| "
    for line in stream:
        sys.stdout.write(prefix + line)
        sys.stdout.flush()


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _start_broker(env: dict[str, str]) -> Broker | None:
    """Start Tansu unless KAFKA_BOOTSTRAP_SERVERS names a broker already."""
    if env.get("KAFKA_BOOTSTRAP_SERVERS"):
        return None
    port = None if _port_in_use(DEV_BROKER_PORT) else DEV_BROKER_PORT
    broker = Broker(port=port).start()
    env["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
    # Tansu makes a group's first join wait about half the session timeout.
    env.setdefault("KAFKA_SESSION_TIMEOUT_MS", "2000")
    # The dev broker keeps events in memory only; replicas catch up over _history at start.
    print(f"{'broker':<10}| Tansu (Kafka protocol) on {broker.bootstrap}", flush=True)
    return broker


def main() -> int:
    """Run the broker and the three services until one exits or Ctrl-C, then stop them all."""
    # A SIGTERM (e.g. from a supervisor) stops the children as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    busy = [port for _, port in SERVICES if _port_in_use(port)]
    if busy:
        print(f"ports {busy} are in use: is `make run` already running?", file=sys.stderr)
        return 1
    env = os.environ.copy()
    broker = _start_broker(env)
    processes: list[subprocess.Popen[str]] = []
    try:
        for (name, _port), colour in zip(SERVICES, COLOURS, strict=True):
            process = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}", "serve"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
                start_new_session=True,  # Ctrl-C reaches them through us, once
            )
            processes.append(process)
            assert process.stdout is not None
            threading.Thread(target=_pump, args=(name, colour, process.stdout), daemon=True).start()
        for name, port in SERVICES:
            print(f"{name:<10}| http://127.0.0.1:{port}/fhir/metadata", flush=True)
        print("Ctrl-C stops all services.", flush=True)
        while all(p.poll() is None for p in processes):
            threading.Event().wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        if broker is not None:
            broker.stop()
    return max((p.returncode or 0) for p in processes) if processes else 1


if __name__ == "__main__":
    sys.exit(main())
