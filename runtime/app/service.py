"""describe as a service: its stop request, and systemd readiness (Type=notify units).

The unit in device/scenespeak.service waits for READY=1, which is sent once the models are
loaded and "SceneSpeak ready" is being spoken; outside systemd ($NOTIFY_SOCKET unset) this does
nothing. The protocol is one datagram on a Unix socket, so no library is needed.
"""

from __future__ import annotations

import os
import signal
import socket
import threading

# describe's stop request. The CLI installs its handlers before any model or channel loads, so
# a Ctrl-C, SIGTERM or SIGHUP during start-up (seconds on a Jetson) also ends the run cleanly:
# the loop starts, sees the request, and closes with its `end` line.
STOP = threading.Event()
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def stop_on_signals() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda *_: STOP.set())


def notify(state: str) -> bool:
    """Send e.g. "READY=1" or "STOPPING=1"; True when a service manager received it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(address)
            s.sendall(state.encode())
        return True
    except OSError:
        return False
