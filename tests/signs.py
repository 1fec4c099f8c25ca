"""Rendered signs pasted into real photos, for the text channel's tests: several fonts
(matplotlib's DejaVu and STIX), colours, a perspective tilt, blur, and JPEG at quality 70.
Made at test time from the committed photos; nothing here is stored."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = sorted((ROOT / "assets" / "photos").glob("*.jpg"))
FONTS = [
    Path(matplotlib.get_data_path()) / "fonts" / "ttf" / f
    for f in (
        "DejaVuSans-Bold.ttf",
        "DejaVuSans.ttf",
        "DejaVuSerif-Bold.ttf",
        "DejaVuSansMono-Bold.ttf",
        "STIXGeneralBol.ttf",
        "DejaVuSerif.ttf",
    )
]
TEXTS = (
    "EXIT",
    "EMERGENCY EXIT",
    "PUSH",
    "PULL",
    "TOILETS",
    "NO ENTRY",
    "PLATFORM 2",
    "OPEN",
    "CLOSED",
    "STOP",
    "WET FLOOR",
    "LIFT",
    "WAY OUT",
    "PHARMACY",
    "BUS STOP",
    "ROOM 214",
    "FIRE EXIT",
    "KEEP LEFT",
    "CAFE",
    "TICKETS",
)
COLOURS = (
    ((0, 110, 0), (255, 255, 255)),
    ((200, 0, 0), (255, 255, 255)),
    ((255, 255, 255), (0, 0, 0)),
    ((20, 40, 150), (255, 255, 255)),
    ((250, 210, 0), (0, 0, 0)),
    ((30, 30, 30), (240, 240, 240)),
)


@dataclass(frozen=True)
class Sign:
    image: np.ndarray  # BGR, the photo with the sign, after blur and JPEG
    text: str
    box: tuple[int, int, int, int]  # where the sign was pasted, x0 y0 x1 y1


def board(text: str, font: Path, height: int, colours) -> np.ndarray:
    """The sign itself, RGB: the text on a coloured board with a margin."""
    bg, fg = colours
    f = ImageFont.truetype(str(font), height)
    x0, y0, x1, y1 = f.getbbox(text)
    pad = height // 3
    img = Image.new("RGB", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), bg)
    ImageDraw.Draw(img).text((pad - x0, pad - y0), text, font=f, fill=fg)
    return np.asarray(img)[:, :, ::-1].copy()


def make_sign(i: int, size=(640, 480), photo: Path | None = None, x: float | None = None) -> Sign:
    """Sign i of a fixed sequence: its text, font, colours, tilt, blur and place from seed i.
    `x` (0..1) puts its centre at that share of the frame's width."""
    rng = np.random.default_rng(1000 + i)
    text = TEXTS[i % len(TEXTS)]
    photo = photo or PHOTOS[i % len(PHOTOS)]
    frame = cv2.resize(cv2.imread(str(photo)), size, interpolation=cv2.INTER_AREA)
    sign = board(
        text, FONTS[i % len(FONTS)], int(rng.integers(26, 44)), COLOURS[(i // 2) % len(COLOURS)]
    )
    h, w = sign.shape[:2]
    scale = min(1.0, 0.6 * size[0] / w)
    image, box = pasted(frame, sign, scale, rng, tilt=0.08, x=x)
    return Sign(image, text, box)


def pasted(
    frame: np.ndarray,
    board: np.ndarray,
    scale: float,
    rng: np.random.Generator,
    tilt: float,
    x: float | None = None,
    flags: int = cv2.INTER_LINEAR,
):
    """(the frame with `board` (BGR) scaled by `scale` and tilted in perspective by up to
    `tilt` of its size pasted in, then blurred and saved as JPEG at quality 70; where it went,
    x0 y0 x1 y1). Its centre is at `x` of the frame's width, or drawn from `rng`, as is the
    rest, in that order: the tilt, the place, the blur."""
    h, w = board.shape[:2]
    size = frame.shape[1], frame.shape[0]
    w2, h2 = int(w * scale), int(h * scale)
    jitter = rng.uniform(-tilt, tilt, (4, 2)) * [w2, h2]  # a perspective tilt
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[0, 0], [w2, 0], [w2, h2], [0, h2]]) + jitter.astype(np.float32)
    dst -= dst.min(axis=0)
    warp = cv2.getPerspectiveTransform(src, dst)
    bw, bh = int(dst[:, 0].max()) + 1, int(dst[:, 1].max()) + 1
    tilted = cv2.warpPerspective(board, warp, (bw, bh), flags=flags)
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), warp, (bw, bh))
    cx = int((x if x is not None else rng.uniform(0.3, 0.7)) * size[0])
    x0 = int(np.clip(cx - bw // 2, 0, size[0] - bw))
    y0 = int(rng.integers(0, size[1] - bh))
    region = frame[y0 : y0 + bh, x0 : x0 + bw]
    region[mask > 127] = tilted[mask > 127]
    frame = cv2.GaussianBlur(frame, (0, 0), float(rng.uniform(0.4, 1.0)))
    ok, jpg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 70])
    return cv2.imdecode(jpg, cv2.IMREAD_COLOR), (x0, y0, x0 + bw, y0 + bh)


def read_right(lines, text: str) -> bool:
    """Every word of the sign right: one line read says exactly its words (case aside)."""
    return text.upper().split() in [l.text.upper().split() for l in lines]
