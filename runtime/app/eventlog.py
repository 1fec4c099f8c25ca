"""JSON-lines event log: `{"t", "frame", "event", ...}`, flushed as each line is written.

The file is appended to, so a service restarted into the same log keeps the failed run's
lines; each run opens with its `start` event, on a line of its own even after a line that a
full disk cut off. Thread-safe, since capture, speech and the loop all log. If the disk is
full or the file is unwritable it warns once and the lines go on to stderr as JSON (journald
keeps them when it runs as a service): the loop never stops for its log, and no line is lost.
A console echo that fails (`describe ... | head -2`) is dropped, and the log goes on.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from runtime.errors import printable


class EventLog:
    def __init__(self, path: str | None, echo=None):
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._file = None
        self._broken = False
        self.echo = echo  # callable(line dict) for the console, or None
        if path:
            try:
                self._file = open(path, "a", buffering=1)
                if self._file.tell() and not _ends_with_newline(path):
                    self._file.write("\n")  # after a line cut off by a full disk
            except OSError as e:
                self._fail(
                    f"{path}: cannot write the log ({e.strerror or e}); log lines go to stderr"
                )

    def _fail(self, msg: str) -> None:
        """Warn once; from now on lines go to stderr."""
        if not self._broken:
            self._broken = True
            _print(f"warning: {printable(msg)}", sys.stderr)
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
                    self._fail(
                        f"log write failed ({e.strerror or e}); log lines go to stderr "
                        "from here on, and the loop goes on"
                    )
            if self._broken:
                _print(text, sys.stderr)
            if self.echo:
                try:
                    self.echo(line)
                except OSError as e:  # the console went away (a closed pipe): the log goes on
                    self.echo = None
                    _silence(sys.stdout)
                    _print(
                        f"warning: console output stopped ({e.strerror or e}); the log goes on",
                        sys.stderr,
                    )
        return line

    def close(self) -> None:
        with self._lock:
            self._close_file()


def _ends_with_newline(path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _print(text: str, stream) -> None:
    """print() that a closed or full stream cannot stop."""
    try:
        print(text, file=stream, flush=True)
    except (OSError, ValueError):
        _silence(stream)


def _silence(stream) -> None:
    """Point a broken stream's descriptor at /dev/null, so that neither later prints nor the
    interpreter's flush at exit raise on it."""
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    except (OSError, ValueError, AttributeError):
        pass


def console(line: dict) -> None:
    """The console view of describe's log: what is spoken (stdout) and what goes wrong
    (stderr), one printable line each."""
    ev, t = line["event"], f"[{line['t']:7.2f}s]"
    if ev == "spoken":
        print(f"{t} {printable(line['caption'])}", flush=True)
        return
    if ev == "source_lost":
        detail = f"{line.get('source', '')}: {line.get('reason', 'lost')}; retrying"
    elif ev in ("warning", "source_restored", "skipped"):
        detail = line.get("message") or line.get("reason") or ""
    else:
        return
    print(f"{t} {ev}: {printable(detail)}", file=sys.stderr, flush=True)


class Stats:
    """Health for long runs and the service journal: a `stats` event (frames/s, captions,
    resident memory) every `every_s` seconds (0: only when forced, at the end)."""

    def __init__(self, log: EventLog, every_s: float):
        self.log, self.every_s = log, every_s
        self.at = (time.monotonic(), 0)  # (time, frames) of the last stats event

    def tick(self, frames: int, captions: int, force: bool = False) -> None:
        now, (t, before) = time.monotonic(), self.at
        if not force and (not self.every_s or now - t < self.every_s):
            return
        self.at = (now, frames)
        fps = round((frames - before) / max(now - t, 1e-9), 1)
        self.log.write("stats", frames, fps=fps, captions=captions, rss_mb=resident_mb())


def resident_mb() -> float | None:
    """This process's resident memory now (Linux /proc), in MB; None where unreadable."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
