"""A progress bar on stderr: redrawn in place on a terminal, a line per tenth otherwise."""

from __future__ import annotations

import sys
from typing import TextIO

_WIDTH = 30


class ProgressBar:
    """`label [=====     ] done/total`, never on stdout (which carries the result)."""

    def __init__(self, label: str, total: int, *, stream: TextIO | None = None) -> None:
        self.label, self.total = label, max(total, 0)
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last_tenth = -1

    def update(self, done: int) -> None:
        """Show `done` of the total."""
        share = 1.0 if self.total == 0 else min(done / self.total, 1.0)
        filled = int(share * _WIDTH)
        line = f"{self.label} [{'=' * filled}{' ' * (_WIDTH - filled)}] {done}/{self.total}"
        if self.tty:
            self.stream.write(f"\r{line}")
        elif int(share * 10) != self._last_tenth:
            self._last_tenth = int(share * 10)
            self.stream.write(f"{line}\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
