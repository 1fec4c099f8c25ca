"""Rendered barcodes and QR codes pasted into real photos, for the barcode channel's tests:
EAN-13, UPC-A and QR codes drawn by zxing-cpp's writer, on a white label with a perspective
tilt, blur and JPEG at quality 70, as the signs of tests/signs.py are. Made at test time from
the committed photos; nothing here is stored."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from signs import PHOTOS, pasted

KINDS = ("EAN-13", "UPC-A", "QR")
URLS = (
    "https://example.org/menu",
    "http://www.example.com/product/42",
    "https://shop.example.net/",
    "WIFI:S:home;T:WPA;P:secret;;",
    "Bus 42 timetable",
    "https://example.org/a?b=1",
)


@dataclass(frozen=True)
class Code:
    image: np.ndarray  # BGR, the photo with the code, after blur and JPEG
    kind: str  # EAN-13 | UPC-A | QR
    text: str  # what a reader must return
    box: tuple[int, int, int, int]  # where the label was pasted, x0 y0 x1 y1


def check_digit(digits: str) -> str:
    """EAN/UPC check digit of the digits before it."""
    total = sum(
        int(c) * (3 if i % 2 == (len(digits) % 2 == 0) else 1) for i, c in enumerate(digits)
    )
    return str((10 - total % 10) % 10)


def content(i: int, kind: str, rng: np.random.Generator) -> str:
    if kind == "QR":
        return URLS[(i // len(KINDS)) % len(URLS)]
    n = 12 if kind == "EAN-13" else 11
    digits = "".join(str(d) for d in rng.integers(0, 10, n))
    if kind == "EAN-13" and digits[0] == "0":
        digits = "4" + digits[1:]  # a leading 0 is a UPC-A
    return digits + check_digit(digits)


def label(text: str, kind: str, module: int) -> np.ndarray:
    """The code on a white label, gray: zxing-cpp's writer, with its quiet zones."""
    import zxingcpp

    fmt = {
        "EAN-13": zxingcpp.BarcodeFormat.EAN13,
        "UPC-A": zxingcpp.BarcodeFormat.UPCA,
        "QR": zxingcpp.BarcodeFormat.QRCode,
    }[kind]
    code = zxingcpp.create_barcode(text, fmt)
    img = np.asarray(zxingcpp.write_barcode_to_image(code, scale=module, add_quiet_zones=False))
    if kind != "QR":  # a 1-D code on a product is wider than tall only so much
        img = cv2.resize(
            img, (img.shape[1], int(img.shape[1] * 0.4)), interpolation=cv2.INTER_NEAREST
        )
    quiet = (9 if kind == "QR" else 4) * module  # printed labels' white margins, in modules
    side = (4 if kind == "QR" else 10) * module
    return cv2.copyMakeBorder(img, quiet, quiet, side, side, cv2.BORDER_CONSTANT, value=255)


def make_code(
    i: int, size=(640, 480), photo=None, x: float | None = None, kind: str | None = None
) -> Code:
    """Code i of a fixed sequence: its kind, content, size, tilt, blur and place from seed i."""
    rng = np.random.default_rng(5000 + i)
    kind = kind or KINDS[i % len(KINDS)]
    text = content(i, kind, rng)
    photo = photo or PHOTOS[i % len(PHOTOS)]
    frame = cv2.resize(cv2.imread(str(photo)), size, interpolation=cv2.INTER_AREA)
    gray = label(text, kind, 1)
    target = rng.uniform(0.35, 0.5) * size[0]  # the label's width in the frame
    image, box = pasted(
        frame,
        cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR),
        target / gray.shape[1],
        rng,
        tilt=0.06,
        x=x,
        flags=cv2.INTER_AREA,
    )
    return Code(image, kind, text, box)
