"""Keys from the terminal for manual mode: Enter or space describes, r repeats, q quits, and a
channel's key asks that channel alone ("t": all the text)."""

from __future__ import annotations

import os
import select
import sys

from runtime.options import OptionError


def stdin_fd() -> int | None:
    """Standard input's descriptor, or None where it is closed (`<&-`)."""
    try:
        fd = sys.stdin.fileno() if sys.stdin is not None else None
        if fd is not None:
            os.fstat(fd)
        return fd
    except (OSError, ValueError, AttributeError):
        return None


class KeyReader:
    """Single keys from the terminal (cbreak mode when stdin is a TTY), read straight from its
    descriptor: keys that arrive together ("r" typed with Enter) are each handled at once, not
    left in a buffer that select() cannot see. The end of input is "q"."""

    def __init__(self):
        fd = stdin_fd()
        if fd is None:
            raise OptionError(
                "mode", "manual", "standard input is closed; keys come from the terminal"
            )
        self.fd: int = fd
        self.tty = os.isatty(fd)
        self.saved = None
        self.keys: list[str] = []
        if self.tty:
            import termios
            import tty

            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)

    def poll(self) -> str | None:
        if not self.keys:
            try:
                if not select.select([self.fd], [], [], 0)[0]:
                    return None
                data = os.read(self.fd, 1024)
            except OSError:
                data = b""
            keys = list(data.decode("utf-8", "replace")) if data else ["q"]
            # r pressed many times at once is one repeat (not a queue of them)
            self.keys = [
                k for i, k in enumerate(keys) if not (k == "r" and keys[i - 1 : i] == ["r"])
            ]
        return self.keys.pop(0)

    def close(self) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
