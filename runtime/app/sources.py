"""Frame sources from URIs, in the jetson-inference manner: one factory picks the backend.

    0, /dev/video0         webcam (V4L2)              live
    clip.mp4               video file                 finite; native rate, or as fast as possible
    folder/                images in name order       finite
    http(s)://..., rtsp:// MJPEG / RTSP stream        live
    csi://0                Jetson CSI camera (GStreamer nvarguscamerasrc)   live

`read(timeout)` returns the newest `Frame`, or None when nothing new arrived in time; the loop
ends when `streaming` is False. Live sources capture in their own thread, keep only the newest
frame and reconnect with backoff when lost, reporting it through `events`.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime import DATA
from runtime.errors import InputError
from runtime.model.preprocess import read_image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
ASSETS = DATA / "assets"
SAMPLE_CLIP = ASSETS / "sample_photos.mp4"  # real photos: the default for a real-photo bundle
SHAPES_CLIP = ASSETS / "sample_scenes.mp4"  # synthetic scenes: the default for models/shapes


def sample_clip(synthetic: bool) -> Path:
    """The bundled clip `describe` plays without a source, in the bundle's own domain."""
    return SHAPES_CLIP if synthetic else SAMPLE_CLIP


@dataclass(frozen=True)
class SourceConfig:
    realtime: bool = (
        True  # files play at their native rate; False: every frame, as fast as possible
    )
    width: int = 640  # requested camera capture size
    height: int = 480
    fps: int = 30
    usb: str = "v4l2"  # OpenCV backend for webcams: v4l2 (Linux), any (let OpenCV choose)
    csi: str = ""  # GStreamer pipeline for csi://N from the device profile ({sensor} {width}
    # {height} {fps}); "" = the generic nvarguscamerasrc pipeline
    reconnect_s: tuple[float, float] = (0.25, 4.0)  # backoff between reconnects: first, most
    open_timeout_s: float = 5.0  # how long a live source may take to deliver its first frame
    stable_s: float = 1.0  # a lost source is back once it has sent frames this long unbroken


@dataclass
class Frame:
    image: np.ndarray | None  # BGR; None when the frame could not be decoded (see `error`)
    index: int
    t_capture: float  # time.monotonic() when it arrived
    error: str | None = None


CSI_PIPELINE = (
    "nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, "
    "height={height}, framerate={fps}/1, format=NV12 ! nvvidconv ! "
    "video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! "
    "appsink drop=true max-buffers=1"
)


def csi_pipeline(sensor: int, cfg: SourceConfig) -> str:
    """GStreamer pipeline for a Jetson CSI camera, ending in BGR frames for OpenCV's appsink."""
    return (cfg.csi or CSI_PIPELINE).format(
        sensor=sensor, width=cfg.width, height=cfg.height, fps=cfg.fps
    )


def describe_uri(uri: str) -> tuple[str, Any]:
    """URI -> (kind, argument): ('camera', 0), ('file', path), ('folder', path), ('stream', url),
    ('csi', sensor). Raises InputError for what cannot be a source."""
    if not uri.isprintable() or not uri:
        raise InputError(f"{uri!r}: not a source (control characters or empty)")
    if uri.isascii() and uri.isdigit():
        return "camera", int(uri)
    if uri.startswith("/dev/video"):
        return "camera", uri
    if uri.startswith(("http://", "https://", "rtsp://", "rtsps://")):
        return "stream", uri
    if uri.startswith("csi://"):
        rest = uri[len("csi://") :]
        if not (rest.isascii() and rest.isdigit()):  # '²' is a digit to str.isdigit, not to int()
            raise InputError(f"{uri}: a CSI camera is csi://N with N the sensor number")
        return "csi", int(rest)
    if "://" in uri:
        raise InputError(
            f"{uri}: unsupported scheme (use a camera index, /dev/videoN, a file, "
            "a folder, http(s)://, rtsp:// or csi://N)"
        )
    path = Path(uri)
    if path.is_dir():
        return "folder", path
    if path.is_file():
        return "file", path
    raise InputError(f"{uri}: no such file, folder or camera")


class FolderSource:
    """Images in name order; an unreadable file yields a Frame with `error` set."""

    live = False

    def __init__(self, folder: Path):
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise InputError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.i = 0
        self.events: queue.Queue = queue.Queue()

    @property
    def streaming(self) -> bool:
        return self.i < len(self.files)

    def read(self, timeout: float = 1.0) -> Frame | None:
        if not self.streaming:
            return None
        path, self.i = self.files[self.i], self.i + 1
        try:
            return Frame(read_image(path), self.i - 1, time.monotonic())
        except InputError as e:  # skipped with its reason; the slideshow goes on
            return Frame(
                None, self.i - 1, time.monotonic(), str(e).replace(str(path), path.name, 1)
            )

    def close(self) -> None:
        self.i = len(self.files)


class VideoFileSource:
    """A video file: every frame in order, paced to its native rate when realtime."""

    live = False

    def __init__(self, path: Path, cfg: SourceConfig):
        self.cap = cv2.VideoCapture(str(path))
        if not self.cap.isOpened():
            raise InputError(f"{path}: cannot open as a video or image")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.period = 1.0 / fps if cfg.realtime and 0 < fps < 1000 else 0.0
        self.index, self.done = 0, False
        self.start: float | None = None
        self.events: queue.Queue = queue.Queue()

    @property
    def streaming(self) -> bool:
        return not self.done

    def read(self, timeout: float = 1.0) -> Frame | None:
        if self.done:
            return None
        now = time.monotonic()
        if self.start is None:
            self.start = now
        elif self.period:
            # skip frames whose time has passed: the loop always works on the newest frame
            due = int((now - self.start) / self.period)
            while self.index < due and self.cap.grab():
                self.index += 1
            wait = self.start + self.index * self.period - now
            if wait > 0:
                time.sleep(wait)
        ok, image = self.cap.read()
        if not ok:
            self.done = True
            return None
        self.index += 1
        return Frame(image, self.index - 1, time.monotonic())

    def close(self) -> None:
        self.done = True
        self.cap.release()


SLOWEST_S = 60.0  # the slowest source kept: one frame a minute (a read waits this long at most)


class LiveSource:
    """Camera or stream, captured in a thread that keeps only the newest frame.

    A source that cannot be opened, or stops sending frames (unplugged camera, stream server
    gone), is reported once as ('source_lost', fields) and reopened with exponential backoff.
    It is back, ('source_restored', fields), once it has sent frames for `stable_s` without a
    break; until then its frames are held back and the backoff keeps growing, so a source that
    flaps (a URL serving one still image) is one outage, not one per reconnect."""

    live = True

    def __init__(
        self,
        target: int | str,
        cfg: SourceConfig,
        backend: int = cv2.CAP_ANY,
        name: str | None = None,
    ):
        self.target, self.cfg, self.backend = target, cfg, backend
        self.name = name or str(target)
        self.events: queue.Queue = queue.Queue()
        self._latest: Frame | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._index = 0
        self.read_timeout_s = cfg.open_timeout_s  # grows for a source slower than it (SLOWEST_S)
        self.period = (
            1.0 / cfg.fps if cfg.fps and cfg.fps > 0 else 0.0
        )  # the least time between frames
        cap = self._open()
        if cap is None:  # said and logged by the loop, and retried as for a lost camera
            self.events.put(
                (
                    "source_lost",
                    {"source": self.name, "reason": "cannot open source", "starting": True},
                )
            )
        self._thread = threading.Thread(target=self._run, args=(cap,), name="capture", daemon=True)
        self._thread.start()

    def _open(self):
        # bounded waits, so a dead stream is noticed and retried instead of blocking forever
        timeouts = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.cfg.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.read_timeout_s * 1000),
        ]
        try:
            cap = cv2.VideoCapture(self.target, self.backend, timeouts)
        except cv2.error:
            return None
        if not cap.isOpened():
            cap.release()
            return None
        if isinstance(self.target, int) or str(self.target).startswith("/dev/video"):
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
            cap.set(cv2.CAP_PROP_FPS, self.cfg.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    def _run(self, cap) -> None:
        lost_since = None if cap is not None else time.monotonic()  # the outage under way
        up_since = None  # first frame of the current connection
        got, last = 0, 0.0  # frames on it, and when the last came
        attempts, delay = 0, self.cfg.reconnect_s[0]
        while not self._stop.is_set():
            try:
                ok, image = cap.read() if cap is not None else (False, None)
            except cv2.error:
                ok, image = False, None
            if ok and image is not None:
                now = time.monotonic()
                got = 1 if up_since is None else got + 1  # frames on this connection
                up_since, last = (now if up_since is None else up_since), now
                if lost_since is not None:
                    if now - up_since < self.cfg.stable_s:
                        continue  # not back until it stays up
                    self.events.put(
                        (
                            "source_restored",
                            {"attempts": attempts, "down_s": round(up_since - lost_since, 3)},
                        )
                    )
                    lost_since, attempts, delay = None, 0, self.cfg.reconnect_s[0]
                with self._cond:
                    self._latest = Frame(image, self._index, now)
                    self._index += 1
                    self._cond.notify_all()
                # no faster than the device profile's camera rate: a 2000 fps stream would
                # spend a core decoding frames that nobody looks at (a stream that sends more
                # waits in its socket; a camera at its own rate is never held back)
                if self._stop.wait(max(0.0, now + self.period - time.monotonic())):
                    break
                continue
            if (
                up_since is not None
                and self.read_timeout_s < SLOWEST_S
                and (got < 3 or (last - up_since) / (got - 1) > self.read_timeout_s / 3)
            ):
                # it sent frames, slowly, then none for a whole read timeout: maybe it is only
                # slow (a camera at one frame in 6 s); wait twice as long for a frame from now
                # on (a camera unplugged after steady frames is lost, and keeps its timeout)
                self.read_timeout_s = min(SLOWEST_S, 2 * self.read_timeout_s)
            if lost_since is None:
                lost_since = time.monotonic()
                self.events.put(("source_lost", {"source": self.name, "reason": "no frames"}))
            up_since = None
            if cap is not None:
                cap.release()
                cap = None
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self.cfg.reconnect_s[1])
            attempts += 1
            cap = self._open()
        if cap is not None:
            cap.release()

    @property
    def streaming(self) -> bool:
        return not self._stop.is_set()

    def read(self, timeout: float = 1.0) -> Frame | None:
        """The newest frame not returned before, or None after `timeout` seconds."""
        with self._cond:
            if self._latest is None:
                self._cond.wait(timeout)
            frame, self._latest = self._latest, None
        return frame

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def open_source(uri: str | None, cfg: SourceConfig = SourceConfig(), sample: Path = SAMPLE_CLIP):
    """URI (None: the bundled `sample` clip) -> a source with read(), streaming, events, close()."""
    if uri is None:
        if not sample.is_file():
            raise InputError(f"{sample}: the sample clip is missing from this checkout")
        uri = str(sample)
    kind, arg = describe_uri(uri)
    if kind == "folder":
        return FolderSource(arg)
    if kind == "file":
        return VideoFileSource(arg, cfg)
    if kind == "csi":
        if "GStreamer:                   YES" not in cv2.getBuildInformation():
            raise InputError(
                f"{uri}: this OpenCV has no GStreamer; install the JetPack OpenCV "
                "(see device/README.md)"
            )
        return LiveSource(csi_pipeline(arg, cfg), cfg, cv2.CAP_GSTREAMER, name=uri)
    if kind == "camera":
        backend = cv2.CAP_V4L2 if cfg.usb == "v4l2" and sys.platform == "linux" else cv2.CAP_ANY
        return LiveSource(arg, cfg, backend, name=uri)
    return LiveSource(arg, cfg, cv2.CAP_FFMPEG, name=uri)
