"""JSON-lines event log: `{"t", "frame", "event", ...}`, flushed as each line is written.

Thread-safe, since capture, speech and the loop all log. If the disk is full or the file is
unwritable it warns once and the lines go on to stderr as JSON (journald keeps them when it
runs as a service): the loop never stops for its log, and no line is lost.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path


class EventLog:
    def __init__(self, path: str | None, echo=None):
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._file = None
        self._broken = False
        self.echo = echo  # callable(line dict) for the console, or None
        if path:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self._file = open(path, "w", buffering=1)
            except OSError as e:
                self._fail(f"{path}: cannot write the log ({e.strerror or e}); log lines go to stderr")

    def _fail(self, msg: str) -> None:
        """Warn once; from now on lines go to stderr."""
        if not self._broken:
            self._broken = True
            print(f"warning: {msg}", file=sys.stderr, flush=True)
        self._close_file()

    def _close_file(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:  # a full disk fails the last flush too
                pass
            self._file = None

    def write(self, event: str, frame: int = -1, **fields) -> dict:
        line = {"t": round(time.monotonic() - self.t0, 4), "frame": frame, "event": event, **fields}
        text = json.dumps(line)
        with self._lock:
            if self._file is not None:
                try:
                    self._file.write(text + "\n")
                    self._file.flush()
                except OSError as e:
                    self._fail(f"log write failed ({e.strerror or e}); log lines go to stderr "
                               "from here on, and the loop goes on")
            if self._broken:
                print(text, file=sys.stderr, flush=True)
            if self.echo:
                self.echo(line)
        return line

    def close(self) -> None:
        with self._lock:
            self._close_file()
