"""`make run`: every service on the embedded defaults, logs prefixed, Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from types import FrameType
from typing import IO

import httpx

from tooling.broker import Broker
from tooling.dev_issuer import (
    DEV_PASSWORD,
    SERVICE_CLIENTS,
    WEB_CLIENT,
    client_key_file,
    client_secret_file,
    dev_dir,
    dev_port,
    dev_url,
    web_redirect_uri,
)

SERVICES = (("intake", 8001), ("scheduling", 8002), ("outcomes", 8003))
COLOURS = ("\033[36m", "\033[35m", "\033[33m")
RESET = "\033[0m"
# DEVRUN_BROKER_PORT moves the dev broker (the tests run a launcher beside `make run`).
DEV_BROKER_PORT = int(os.environ.get("DEVRUN_BROKER_PORT", "9092"))
# How long the services get to stop after Ctrl-C before they are killed.
STOP_TIMEOUT_S = 15.0
# The issuer generates its keys on first start; the services need them before they start.
ISSUER_START_S = 30.0
# Dev only: never a default of the service itself (an unset key refuses to export).
DEV_RESEARCH_KEY = "dev-research-key-not-for-any-real-study"


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


def _spawn(name: str, colour: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # Ctrl-C reaches them through us, once
    )
    assert process.stdout is not None
    threading.Thread(target=_pump, args=(name, colour, process.stdout), daemon=True).start()
    return process


def _issuer_ready(process: subprocess.Popen[str], signals: _Signals) -> bool:
    deadline = time.monotonic() + ISSUER_START_S
    while process.poll() is None and not signals.count and time.monotonic() < deadline:
        try:
            if httpx.get(f"{dev_url()}/healthz", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return False


def _start_issuer(
    env: dict[str, str], services: list[tuple[str, int]], signals: _Signals
) -> subprocess.Popen[str]:
    """Start the dev issuer for the services' ports and give each service its client."""
    directory = dev_dir().resolve()
    audiences = [f"http://127.0.0.1:{port}/fhir" for _, port in services]
    argv = ["-m", "tooling.dev_issuer", "serve", "--port", str(dev_port()), "--dir", str(directory)]
    argv += [arg for audience in audiences for arg in ("--audience", audience)]
    process = _spawn("issuer", "\033[32m", argv, env)
    outcomes_port = dict(services)["outcomes"]
    if _issuer_ready(process, signals):
        print(f"{'issuer':<10}| SMART dev issuer on {dev_url()} (state in {directory})", flush=True)
        # The clinician pages sign in with the issuer's web client: their callback, wherever
        # OUTCOMES_PORT puts them, must be registered exactly.
        from tooling.dev_issuer.state import add_redirect_uri

        add_redirect_uri(directory, web_redirect_uri(f"http://127.0.0.1:{outcomes_port}"))
    elif process.poll() is None and not signals.count:
        print(f"{'issuer':<10}| did not answer in {ISSUER_START_S:.0f} s", flush=True)
    for name, _port in services:
        client_id = SERVICE_CLIENTS[name]
        env[f"{name.upper()}_AUTH_ISSUER"] = dev_url()
        env[f"{name.upper()}_AUTH_CLIENT_ID"] = client_id
        env[f"{name.upper()}_AUTH_CLIENT_KEY_FILE"] = str(client_key_file(directory, client_id))
    env.setdefault("OUTCOMES_WEB_CLIENT_ID", WEB_CLIENT)
    secret_file = client_secret_file(directory, WEB_CLIENT)
    env.setdefault("OUTCOMES_WEB_CLIENT_SECRET_FILE", str(secret_file))
    return process


class _Signals:
    """Counts SIGINT / SIGTERM instead of raising, so no signal can cut the clean-up short."""

    def __init__(self) -> None:
        self.count = 0
        self.received = threading.Event()

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        self.received.set()

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self)


def _services() -> list[tuple[str, int]]:
    """The services and their ports (`<NAME>_PORT` moves one, as it moves the service)."""
    return [(name, int(os.environ.get(f"{name.upper()}_PORT", port))) for name, port in SERVICES]


def _stop_all(
    processes: list[subprocess.Popen[str]], broker: Broker | None, signals: _Signals
) -> None:
    """Stop every child: politely first; a further signal or a stuck child gets a kill."""
    asked = signals.count
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(p.poll() is None for p in processes):
        if signals.count > asked or time.monotonic() > deadline:
            break  # a second Ctrl-C means "now"
        time.sleep(0.1)
    for process in processes:
        if process.poll() is None:
            process.kill()
    for process in processes:
        process.wait()
    if broker is not None:
        broker.stop()


def main() -> int:
    """Run the broker, the dev issuer and the three services until one exits or Ctrl-C, then
    stop them all."""
    # Ctrl-C and SIGTERM (a supervisor, or make forwarding a signal to its process group) only
    # set a flag: however many arrive and whenever, every child started is stopped.
    signals = _Signals()
    signals.install()
    services = _services()
    busy = [port for port in [dev_port(), *(p for _, p in services)] if _port_in_use(port)]
    if busy:
        print(f"ports {busy} are in use: is `make run` already running?", file=sys.stderr)
        return 1
    env = os.environ.copy()
    # Study ids of `$research-export` on a dev machine; production sets its own secret.
    env.setdefault("OUTCOMES_RESEARCH_KEY", DEV_RESEARCH_KEY)
    processes: list[subprocess.Popen[str]] = []
    broker: Broker | None = None
    try:
        broker = _start_broker(env)
        processes.append(_start_issuer(env, services, signals))
        for (name, _port), colour in zip(services, COLOURS, strict=True):
            if signals.count or processes[0].poll() is not None:
                break
            processes.append(_spawn(name, colour, ["-m", f"services.{name}", "serve"], env))
        if not signals.count:
            for name, port in services:
                print(f"{name:<10}| http://127.0.0.1:{port}/fhir/metadata", flush=True)
            intake = services[0][1]
            print(
                "Call the API with a token from the dev issuer:\n"
                "  TOKEN=$(make -s token SCOPE='system/*.rs' | tail -1)\n"
                f'  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:{intake}/fhir/Patient',
                flush=True,
            )
            outcomes = services[2][1]
            print(
                f"Clinician pages: http://127.0.0.1:{outcomes}/app/ (dev users such as "
                f"psychiatrist-a, password {DEV_PASSWORD}: development only)",
                flush=True,
            )
            print("Ctrl-C stops all services.", flush=True)
        while not signals.count and all(p.poll() is None for p in processes):
            signals.received.wait(0.5)
    finally:
        _stop_all(processes, broker, signals)
    return max((p.returncode or 0) for p in processes) if processes else 1


if __name__ == "__main__":
    sys.exit(main())
