"""A real MJPEG-over-HTTP server on 127.0.0.1 for tests: multipart/x-mixed-replace JPEG frames
at a fixed rate, which can be stopped and started again on the same port."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = "scenespeakframe"


class MjpegServer:
    def __init__(self, frames: list[np.ndarray], fps: float = 15.0, port: int = 0):
        self.jpegs = [
            cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for f in frames
        ]
        self.fps = fps
        self.port = port or _free_port()
        self.server: ThreadingHTTPServer | None = None
        self.served = 0  # frames sent, over all connections

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> MjpegServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                i, start = 0, time.monotonic()
                try:
                    while outer.server is not None and not getattr(self.server, "_stopping", False):
                        jpg = outer.jpegs[
                            (i // max(1, int(outer.fps * outer.hold_s))) % len(outer.jpegs)
                        ]
                        self.wfile.write(
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                            f"Content-Length: {len(jpg)}\r\n\r\n".encode()
                            + jpg
                            + b"\r\n"
                        )
                        outer.served += 1
                        i += 1
                        time.sleep(max(0.0, start + i / outer.fps - time.monotonic()))
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass

        self.hold_s = getattr(self, "hold_s", 1e9)
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            server._stopping = True
            server.shutdown()
            server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
