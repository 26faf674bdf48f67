"""`make run`: every service on the embedded defaults, logs prefixed, Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import IO

SERVICES = (("intake", 8001), ("scheduling", 8002), ("outcomes", 8003))
COLOURS = ("\033[36m", "\033[35m", "\033[33m")
RESET = "\033[0m"


def _pump(name: str, colour: str, stream: IO[str]) -> None:
    prefix = f"{colour}{name:<10}{RESET}| " if sys.stdout.isatty() else f"{name:<10}| "
    for line in stream:
        sys.stdout.write(prefix + line)
        sys.stdout.flush()


def main() -> int:
    """Run the three services until one exits or Ctrl-C, then stop them all."""
    # A SIGTERM (e.g. from a supervisor) stops the children as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    processes: list[subprocess.Popen[str]] = []
    for (name, _port), colour in zip(SERVICES, COLOURS, strict=True):
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}", "serve"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=os.environ.copy(),
        )
        processes.append(process)
        assert process.stdout is not None
        threading.Thread(target=_pump, args=(name, colour, process.stdout), daemon=True).start()
    for name, port in SERVICES:
        print(f"{name:<10}| http://127.0.0.1:{port}/fhir/metadata", flush=True)
    print("Ctrl-C stops all services.", flush=True)
    try:
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
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
    return max((p.returncode or 0) for p in processes)


if __name__ == "__main__":
    sys.exit(main())
