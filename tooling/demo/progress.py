"""A small progress bar on stderr (redrawn in place on a terminal, every tenth otherwise)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30


class ProgressBar:
    """`bar(done, total)` draws `label [#####.....] done/total elapsed`."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.began = time.monotonic()
        self.shown = -1

    def __call__(self, done: int, total: int) -> None:
        tty = self.stream.isatty()
        tenth = done * 10 // max(total, 1)
        if not tty and tenth == self.shown and done != total:
            return
        self.shown = tenth
        filled = WIDTH * done // max(total, 1)
        seconds = int(time.monotonic() - self.began)
        line = (
            f"{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] {done}/{total} patients "
            f"{seconds // 60}m{seconds % 60:02d}s"
        )
        self.stream.write(("\r" + line) if tty else line + "\n")
        if tty and done == total:
            self.stream.write("\n")
        self.stream.flush()
