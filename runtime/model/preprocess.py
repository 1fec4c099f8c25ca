"""Frame preprocessing with OpenCV: any BGR frame -> the encoder's (1,3,224,224) float input.

The same function prepares training images, so train and device see identical tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from runtime import MAX_PIXELS  # larger images are refused before decoding (a 20000 x 20000
from runtime.errors import InputError

# PNG is 1.2 GB); the same limit is OpenCV's own for every format (OPENCV_IO_MAX_IMAGE_PIXELS)

MAX_FILE_BYTES = 512 * 2**20  # an image file larger than this is refused before it is read
# (a video given to `caption`, say); no image under the pixel limit needs as much

# EXIF orientation (tag 0x0112) -> what makes the stored pixels upright, as PIL's exif_transpose
UPRIGHT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: cv2.transpose,
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.flip(cv2.transpose(a), -1),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def _header(p: Path) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) from the header where PIL knows the format, else
    (0, 0, 1): OpenCV's own pixel limit decides then."""
    try:
        from PIL import Image  # matplotlib's dependency: reads only the header here

        Image.MAX_IMAGE_PIXELS = None  # its own bomb check raises without the size; ours is below
        with Image.open(p) as im:
            w, h = im.size
            try:
                orientation = int(im.getexif().get(0x0112, 1))
            except Exception:  # a damaged EXIF block: the pixels as stored
                orientation = 1
            return w, h, orientation
    except Exception:
        return 0, 0, 1


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """The decoded pixels turned as the photo's EXIF orientation says (a phone's portrait
    photo is often stored sideways with tag 6)."""
    turn = UPRIGHT.get(orientation)
    return turn(image) if turn is not None else image


def read_image(path: str | Path) -> np.ndarray:
    """An image file's pixels as OpenCV decodes them, upright as its EXIF orientation says, or
    one InputError naming the problem: a folder, a FIFO or device (never opened: reading one
    can block forever), a name the system refuses (too long), an image whose header claims
    more than MAX_PIXELS (checked before decoding, and by OpenCV for every format), or one that
    does not decode. The file is read as bytes and decoded in memory, so any name the file
    system holds works (OpenCV's imread crashes on a name that is not UTF-8)."""
    p = Path(path)
    try:
        if p.is_dir():
            raise InputError(f"{path}: is a folder, not an image (describe plays a folder)")
        if not p.exists():
            raise InputError(f"{path}: no such image file")
        if not p.is_file():
            raise InputError(f"{path}: not a regular file (a FIFO or device), skipped")
        w, h, orientation = _header(p)
        if w * h > MAX_PIXELS:
            raise InputError(
                f"{path}: {w}x{h} pixels is over the {MAX_PIXELS // 1_000_000}-megapixel "
                "limit for an image"
            )
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(
                f"{path}: {size // 2**20} MB is too large for an image (a video? "
                "describe plays videos)"
            )
        data = np.fromfile(p, dtype=np.uint8)
    except MemoryError:
        raise InputError(f"{path}: not enough memory to read it") from None
    except OSError as e:  # a name over 255 bytes, a file that vanished or cannot be read
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error as e:  # OpenCV's pixel limit, read from the header of any format
        if "MAX_IMAGE_PIXELS" in str(e):
            raise InputError(
                f"{path}: over the {MAX_PIXELS // 1_000_000}-megapixel limit for an image"
            ) from None
        image = None
    if image is None or not image.size:
        raise InputError(f"{path}: cannot decode image")
    return upright(image, orientation) if orientation != 1 else image


@dataclass(frozen=True)
class PreprocessConfig:
    size: int = 224  # square input side
    resize: str = "stretch"  # the whole frame is resized to size x size, nothing is cropped
    channel_order: str = "RGB"  # what the encoder expects; frames arrive as BGR
    mean: float = 127.0  # EfficientNet-Lite normalisation: (x - 127) / 128, per channel
    std: float = 128.0

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        """From a manifest's preprocess block; ValueError names what is wrong."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        cfg = cls(**d)
        if (
            not isinstance(cfg.size, int)
            or isinstance(cfg.size, bool)
            or not 32 <= cfg.size <= 1024
            or cfg.size % 32
        ):
            raise ValueError(f"size {cfg.size!r} must be a multiple of 32 in 32..1024")
        if cfg.resize != "stretch" or cfg.channel_order not in ("RGB", "BGR"):
            raise ValueError(
                f"resize {cfg.resize!r} / channel_order {cfg.channel_order!r} "
                "must be stretch / RGB or BGR"
            )
        for name in ("mean", "std"):
            v = getattr(cfg, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not abs(v) < 1e6:
                raise ValueError(f"{name} {v!r} must be a number")
        if not cfg.std > 0:
            raise ValueError(f"std {cfg.std!r} must be positive")
        return cfg


def to_bgr8(frame: np.ndarray | None) -> np.ndarray:
    """Any decoded image (gray, BGRA, 16-bit, float in [0,1]) -> HxWx3 uint8 BGR."""
    if frame is None or not isinstance(frame, np.ndarray) or frame.size == 0:
        raise InputError("empty frame")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise InputError(f"frame of shape {frame.shape} is not an image")
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    elif frame.dtype.kind == "f":  # [0,1] or [0,255]; NaN -> 0, +-inf -> the ends of the range
        finite = frame[np.isfinite(frame)]
        top = 1.0 if finite.size == 0 or finite.max() <= 1.0 else 255.0
        frame = np.clip(np.nan_to_num(frame, nan=0.0, posinf=top, neginf=0.0), 0, top)
        frame = (frame * (255.0 / top)).astype(np.uint8)
    elif frame.dtype != np.uint8:
        raise InputError(f"frame dtype {frame.dtype} is not supported")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


def resize(frame: np.ndarray, size: int) -> np.ndarray:
    """The whole frame to size x size: OpenCV's INTER_AREA when shrinking (an anti-aliased
    area mean), bilinear when growing along a side. A faster shrink was tried and not kept
    (docs/performance.md, "Preprocessing")."""
    h, w = frame.shape[:2]
    if (h, w) == (size, size):
        return frame
    shrink = h > size and w > size
    return cv2.resize(
        frame, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )


def preprocess(frame: np.ndarray, cfg: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """BGR frame (H,W,3) of any size -> float32 (1,3,size,size), normalised, RGB."""
    frame = resize(to_bgr8(frame), cfg.size)
    # one plane at a time into the NCHW blob, then (x - mean) / std in place: the very values
    # cv2.dnn.blobFromImage gives (tests/test_preprocess.py), several times faster
    planes = cv2.split(frame)
    if cfg.channel_order == "RGB":
        planes = planes[::-1]
    blob = np.empty((1, 3, cfg.size, cfg.size), np.float32)
    for channel, plane in zip(blob[0], planes):
        channel[...] = plane
    blob -= np.float32(cfg.mean)
    blob *= np.float32(1.0 / cfg.std)
    return blob
