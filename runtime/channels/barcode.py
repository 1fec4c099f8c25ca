"""The barcode channel: product codes and QR codes read aloud, with zxing-cpp (Apache-2.0, a
self-contained wheel that reads offline).

    "Barcode: 4, 0 0 6, 3 8 1, 3 3 3, 9 3 1"     an EAN-13, its digits in groups of three
    "QR code: link to example.org"               a QR code holding a web address
    ""                                           no code in view: nothing is said

It is slow: it reads once per new scene in the describe loop's background worker, like text,
and manual mode's "b" reads the frame at hand; it never runs per frame. With find mode (barcode)
it places the code ("barcode on your left") and says "closer" where a barcode is seen but too
small to read (OpenCV's barcode detector finds its stripes; zxing-cpp could not decode them).

A misread product code is worse than none: a 1-D code's check digit lets through about one
misread in ten, and on blurred codes zxing-cpp returned a wrong EAN-13 with a valid check digit
on 4% of frames. So a 1-D code is said only when it is read the same on `agree` of three views
of the frame (sharpened, sharpened and 1.5x, plain and 2x): on 300 rendered codes in photos
(tests/codes.py, seeds 0-299) that read 289 right and none wrong, where any one view read 299
with 16 wrong. A QR code carries error correction and is said from one view.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import cv2
import numpy as np

from runtime.channels.base import Context, Findings, Setup
from runtime.channels.places import third
from runtime.errors import InputError
from runtime.options import check, number

HINT = "pip install -c requirements/constraints.txt zxing-cpp"
LINEAR = ("EAN-13", "EAN-8", "UPC-A", "UPC-E", "Code 128")  # said as "Barcode" (Code 128 as "Code")


@dataclass(frozen=True)
class BarcodeConfig:
    agree: int = 2  # views of the three that must read a 1-D code the same before it is said
    side: int = 960  # a frame's longest side is scaled down to this before reading (the views
    # go up to twice it)
    max_codes: int = 3  # codes said at most from one frame
    max_chars: int = 100  # a QR code's text is cut here ("..." said after it)

    def __post_init__(self):
        check(self, "agree", number(self.agree, int) and 1 <= self.agree <= 3, "use 1..3 views")
        check(
            self,
            "side",
            number(self.side, int) and 320 <= self.side <= 2048,
            "use 320..2048 pixels",
        )
        check(
            self, "max_codes", number(self.max_codes, int) and self.max_codes >= 1, "use 1 or more"
        )
        check(
            self,
            "max_chars",
            number(self.max_chars, int) and self.max_chars >= 10,
            "use 10 or more",
        )


@dataclass(frozen=True)
class Code:
    format: str  # EAN-13, EAN-8, UPC-A, UPC-E, Code 128, QR Code
    text: str  # as encoded (a UPC-A's 12 digits)
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels
    where: str  # left | ahead | right

    def as_json(self) -> dict:
        return {
            "format": self.format,
            "text": self.text,
            "box": list(self.box),
            "where": self.where,
        }


def grouped(digits: str) -> str:
    """'4006381333931' -> '4, 0 0 6, 3 8 1, 3 3 3, 9 3 1': groups of three from the right, each
    digit said on its own (a voice reads '006' as 'six', '381' as a number)."""
    head = len(digits) % 3
    groups = ([digits[:head]] if head else []) + [
        digits[i : i + 3] for i in range(head, len(digits), 3)
    ]
    return ", ".join(" ".join(g) for g in groups)


def _clean(text: str, limit: int) -> str:
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[:limit].rstrip() + "..."


def body(code: Code, limit: int = 100) -> str:
    """What the code says, as heard: grouped digits, 'link to example.org', 'Wi-Fi network home'."""
    if code.format in LINEAR and code.text.isdigit():
        return grouped(code.text)
    text = code.text.strip()
    if text.upper().startswith("WIFI:"):
        ssid = next((f[2:] for f in text[5:].split(";") if f.upper().startswith("S:")), "")
        return f"Wi-Fi network {_clean(ssid, limit)}".strip()
    parts = urlsplit(
        text if "://" in text else ("http://" + text if text.lower().startswith("www.") else text)
    )
    if parts.scheme in ("http", "https") and parts.hostname:
        host = parts.hostname[4:] if parts.hostname.startswith("www.") else parts.hostname
        return f"link to {host}"
    return _clean(text, limit)


def spoken(codes: list[Code], limit: int = 100) -> str:
    """'Barcode: 4, 0 0 6, ...', 'QR code: link to example.org', joined by '. '; '' for none."""
    head = {"QR Code": "QR code", "Code 128": "Code"}
    return ". ".join(f"{head.get(c.format, 'Barcode')}: {body(c, limit)}" for c in codes)


class BarcodeReader:
    """zxing-cpp on three views of a frame; a 1-D code said only where `agree` views read it."""

    def __init__(self, cfg: BarcodeConfig = BarcodeConfig()):
        try:
            import zxingcpp
        except ImportError as e:
            raise InputError(f"the barcode channel needs zxing-cpp ({e}); {HINT}") from None
        self.cfg, self.zx = cfg, zxingcpp
        F = zxingcpp.BarcodeFormat
        self.formats = (F.EAN13, F.EAN8, F.UPCA, F.UPCE, F.Code128, F.QRCode)
        self.names = {
            F.EAN13: "EAN-13",
            F.EAN8: "EAN-8",
            F.UPCA: "UPC-A",
            F.UPCE: "UPC-E",
            F.Code128: "Code 128",
            F.QRCode: "QR Code",
        }
        # where the stripes are, read or not (OpenCV 4.8 on; JetPack's older one: no "closer")
        self.stripes = cv2.barcode.BarcodeDetector() if hasattr(cv2, "barcode") else None

    def _gray(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        scale = min(1.0, self.cfg.side / max(gray.shape))
        if scale < 1:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return gray, scale

    def views(self, gray: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """(image, its scale against `gray`): sharpened, sharpened at 1.5x, plain at 2x."""
        sharp = cv2.addWeighted(gray, 2.0, cv2.GaussianBlur(gray, (0, 0), 2), -1.0, 0)
        up = lambda img, f: cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC)  # noqa: E731
        return [(sharp, 1.0), (up(sharp, 1.5), 1.5), (up(gray, 2.0), 2.0)]

    def read(self, frame: np.ndarray) -> list[Code]:
        """8-bit BGR (or gray) frame -> the codes read on it, the largest first."""
        gray, scale = self._gray(frame)
        votes: dict[tuple[str, str], list] = {}
        for view, f in self.views(gray):
            seen = set()
            # zxing-cpp converts the tuple to BarcodeFormats; its stub takes only that
            for b in self.zx.read_barcodes(view, formats=self.formats):  # type: ignore[arg-type]
                fmt, text = self.names.get(b.format, str(b.format)), b.text
                if fmt == "EAN-13" and len(text) == 13 and text.startswith("0"):
                    fmt, text = "UPC-A", text[1:]  # a UPC-A is an EAN-13 with a leading 0
                if (fmt, text) in seen or not text:
                    continue
                seen.add((fmt, text))
                p = b.position
                xs = [pt.x for pt in (p.top_left, p.top_right, p.bottom_right, p.bottom_left)]
                ys = [pt.y for pt in (p.top_left, p.top_right, p.bottom_right, p.bottom_left)]
                box = tuple(int(round(v / f / scale)) for v in (min(xs), min(ys), max(xs), max(ys)))
                votes.setdefault((fmt, text), []).append(box)
        width = frame.shape[1]
        codes = [
            Code(fmt, text, boxes[0], third(boxes[0][0], boxes[0][2], width))
            for (fmt, text), boxes in votes.items()
            if fmt not in LINEAR or len(boxes) >= self.cfg.agree
        ]
        area = lambda c: (c.box[2] - c.box[0]) * max(1, c.box[3] - c.box[1])  # noqa: E731
        return sorted(codes, key=area, reverse=True)

    def glimpse(self, frame: np.ndarray) -> str | None:
        """Where a barcode's stripes are seen (left | ahead | right), read or not; None."""
        if self.stripes is None:
            return None
        gray, scale = self._gray(frame)
        try:
            ok, corners = self.stripes.detect(gray)
        except cv2.error:
            return None
        if not ok or corners is None or len(corners) == 0:
            return None
        pts = np.asarray(corners, dtype=np.float64).reshape(-1, 4, 2)
        biggest = max(pts, key=lambda q: cv2.contourArea(q.astype(np.float32)))
        return third(biggest[:, 0].min() / scale, biggest[:, 0].max() / scale, frame.shape[1])


class BarcodeChannel:
    """Product codes and QR codes, read once per scene (slow); "b" reads the frame at hand."""

    name, slow, key = "barcode", True, "b"
    finds = True  # find mode looks in its places (or words)

    def __init__(self, setup: Setup):
        self.reader = BarcodeReader()

    def run(self, frame: np.ndarray, context: Context) -> Findings:
        codes = self.reader.read(frame)[: self.reader.cfg.max_codes]
        read = spoken(codes, self.reader.cfg.max_chars)
        names = [
            (n, c)
            for c in codes
            for n in (("qr code", "barcode") if c.format == "QR Code" else ("barcode",))
        ]
        places = tuple((n, c.where) for n, c in names)
        guides = tuple((n, "reads " + body(c, self.reader.cfg.max_chars)) for n, c in names)
        if not codes:  # too small or too blurred to read: find mode says where, and "closer"
            where = self.reader.glimpse(frame)
            if where is not None:
                places, guides = (("barcode", where),), (("barcode", "closer"),)
        if context.everything and not read:
            read = "no code"
        return Findings(
            self.name,
            read=read,
            places=places,
            guides=guides,
            key=(read,),
            report={"codes": [c.as_json() for c in codes]},
            value=codes,
        )


def usable(setup: Setup) -> str | None:
    import importlib.util

    return (
        None
        if importlib.util.find_spec("zxingcpp")
        else f"the barcode channel needs zxing-cpp; {HINT}"
    )
