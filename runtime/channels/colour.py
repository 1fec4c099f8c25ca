"""The colour channel: the main colours of what is held in front of the camera, in plain words.

    "mostly grey"            one colour covers most of the centre of the frame
    "dark blue and white"    two colours do

It reads the centre of the frame (the middle half of its width and height), where a shirt or a
can is held up, names each pixel from a fixed palette of 12 everyday colours in CIELAB
(OpenCV's conversion: lightness L, chroma C, hue h), and says the one or two that cover the
most. Blue, green, grey, red, purple and brown get "dark" or "light" from their lightness.

White-balance guard: a camera whose white balance failed under a warm lamp renders a white wall
orange. The frame's illuminant is estimated from the border around the centre (shades of grey,
p = 6, on linear RGB) and matched to a colour temperature along the blackbody locus, so no
green or magenta is ever "corrected". Only a strong warm cast (under `warm_k`) is corrected,
by `strength` of it: a daylight photo of warm things (a tabby cat, a wooden table) estimates
4800-5700 K and is left as it is. Chosen on rendered patches in the committed photos under
3200, 5000 and 6500 K (tests/test_colour.py renders them): 191 of 195 named right, the misses
all beige called white or yellow.

It is fast (about 2 ms a frame) and runs on every described frame; manual mode's "c" says it
for the frame at hand whichever channels are on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from runtime.channels.base import Context, Findings, Setup
from runtime.options import check, number

NAMES = (
    "black",
    "grey",
    "white",
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
    "beige",
)
SHADED = {"blue", "green", "grey", "red", "purple", "brown"}  # said as "dark blue", "light grey"


@dataclass(frozen=True)
class ColourConfig:
    centre: float = 0.5  # the share of the frame's width and height that is read, centred
    mostly: float = 0.6  # one colour covering this share of the centre is "mostly" it
    second: float = 0.2  # a second colour covering this share is said too
    warm_k: float = 4300.0  # a cast estimated under this colour temperature is corrected
    strength: float = 0.85  # how much of the cast is corrected (all of it over-corrects pink)

    def __post_init__(self):
        check(self, "centre", number(self.centre) and 0.1 <= self.centre <= 1, "use 0.1..1")
        check(self, "mostly", number(self.mostly) and 0.3 <= self.mostly <= 1, "use 0.3..1")
        check(self, "second", number(self.second) and 0.05 <= self.second <= 0.5, "use 0.05..0.5")
        check(
            self, "warm_k", number(self.warm_k) and 2500 <= self.warm_k <= 6500, "use 2500..6500 K"
        )
        check(self, "strength", number(self.strength) and 0 <= self.strength <= 1, "use 0..1")


def name(L: float, C: float, h: float) -> str:
    """The palette's name of a CIELAB colour (L 0..100, chroma C, hue h in degrees)."""
    if C < 10 or (L < 25 and C < 14) or (L >= 82 and C < 18 and 40 <= h <= 110):
        return "black" if L < 20 else "white" if L >= 82 else "grey"
    if h >= 330 or h < 41:
        if L >= 65 and C < 60:
            return "pink"
        return "purple" if h >= 330 and h < 345 else "red"
    if h < 90:
        if (L < 50 and C < 55) or (L < 65 and C < 35):
            return "brown"
        if C < 30:
            return "beige"
        return "orange" if h < 75 else "yellow"
    if h < 110:
        return "yellow" if L >= 55 else "brown"
    if h < 195:
        return "green"
    return "blue" if h < 311 else "purple"


def names(lab: np.ndarray) -> np.ndarray:
    """(N, 3) CIELAB -> (N,) palette names: name() on every row at once."""
    L, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    C, h = np.hypot(a, b), np.degrees(np.arctan2(b, a)) % 360
    grey = (C < 10) | ((L < 25) & (C < 14)) | ((L >= 82) & (C < 18) & (h >= 40) & (h <= 110))
    reddish = (h >= 330) | (h < 41)
    warm = ~reddish & (h < 90)
    brownish = ((L < 50) & (C < 55)) | ((L < 65) & (C < 35))
    conditions = [
        grey & (L < 20),
        grey & (L >= 82),
        grey,
        reddish & (L >= 65) & (C < 60),
        reddish & (h >= 330) & (h < 345),
        reddish,
        warm & brownish,
        warm & (C < 30),
        warm & (h < 75),
        warm,
        (h < 110) & (L >= 55),
        h < 110,
        h < 195,
        h < 311,
    ]
    choices = [
        "black",
        "white",
        "grey",
        "pink",
        "purple",
        "red",
        "brown",
        "beige",
        "orange",
        "yellow",
        "yellow",
        "brown",
        "green",
        "blue",
    ]
    return np.select(conditions, choices, default="purple")


def linear(srgb8: np.ndarray) -> np.ndarray:
    s = srgb8.astype(np.float32) / 255
    return np.where(s <= 0.04045, s / 12.92, ((s + 0.055) / 1.055) ** 2.4)


def encoded(lin: np.ndarray) -> np.ndarray:
    lin = np.clip(lin, 0, 1)
    return np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055).astype(
        np.float32
    )


def blackbody(kelvin: float) -> np.ndarray:
    """Linear sRGB (R, G, B) of a blackbody at this temperature, with G = 1, against D65's
    (Kim et al.'s fit of the Planckian locus in CIE xy, 1667-25000 K)."""
    return _blackbody(kelvin) / _blackbody(6504.0)


@cache
def _blackbody(t: float) -> np.ndarray:
    if t < 4000:
        x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390
    if t < 2222:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif t < 4000:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    xyz = np.array([x / y, 1.0, (1 - x - y) / y])
    rgb = (
        np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])
        @ xyz
    )
    return rgb / rgb[1]


KELVINS = np.arange(2500.0, 10001.0, 100.0)
_RB = np.log([blackbody(k)[0] / blackbody(k)[2] for k in KELVINS])


def kelvin(illuminant: np.ndarray) -> float:
    """The blackbody temperature whose red:blue ratio is the illuminant's."""
    rb = np.log(max(illuminant[0], 1e-6) / max(illuminant[2], 1e-6))
    return float(KELVINS[int(np.argmin(np.abs(_RB - rb)))])


class ColourReader:
    def __init__(self, cfg: ColourConfig = ColourConfig()):
        self.cfg = cfg

    def balanced(self, frame: np.ndarray) -> tuple[np.ndarray, float | None]:
        """(the frame small, in linear RGB, with a strong warm cast corrected; the cast's
        temperature where one was corrected, else None)."""
        small = cv2.resize(frame, (96, 72), interpolation=cv2.INTER_AREA)
        lin = linear(small[:, :, ::-1])
        h, w = lin.shape[:2]
        c = self.cfg.centre / 2
        border = np.ones((h, w), bool)
        border[int(h * (0.5 - c)) : int(h * (0.5 + c)), int(w * (0.5 - c)) : int(w * (0.5 + c))] = (
            False
        )
        usable = border & (lin.max(axis=2) < 0.98) & (lin.mean(axis=2) > 0.02)
        if usable.sum() < 50:
            return lin, None
        px = lin[usable].astype(np.float64)
        light = (px**6).mean(axis=0) ** (1 / 6)
        k = kelvin(light / max(light[1], 1e-6))
        if k >= self.cfg.warm_k:
            return lin, None
        cast = blackbody(k) / blackbody(k).max()
        gain = (1 / cast) ** self.cfg.strength
        gain = gain / (gain * cast).max()  # the lamp's white stays as bright
        return np.clip(lin * gain.astype(np.float32), 0, 1), k

    def read(self, frame: np.ndarray) -> tuple[list[tuple[str, float]], float | None]:
        """8-bit BGR -> ([(colour, share of the centre)], the cast corrected in K or None),
        the most covering first; each colour with its shade ("dark blue")."""
        lin, k = self.balanced(frame)
        h, w = lin.shape[:2]
        c = self.cfg.centre / 2
        centre = encoded(
            lin[int(h * (0.5 - c)) : int(h * (0.5 + c)), int(w * (0.5 - c)) : int(w * (0.5 + c))]
        )
        lab = cv2.cvtColor(np.ascontiguousarray(centre), cv2.COLOR_RGB2LAB).reshape(-1, 3)
        found = names(lab)
        out = []
        for n, count in sorted(zip(*np.unique(found, return_counts=True)), key=lambda x: -x[1]):
            lightness = float(np.median(lab[found == n, 0]))
            shade = (
                ("dark " if lightness < 35 else "light " if lightness > 72 else "")
                if n in SHADED
                else ""
            )
            out.append((shade + str(n), round(float(count) / len(found), 3)))
        return out, k

    def said(self, colours: list[tuple[str, float]]) -> str:
        """'mostly grey', 'dark blue and white'; '' for none."""
        if not colours:
            return ""
        (first, share), rest = colours[0], colours[1:]
        if share >= self.cfg.mostly or not rest or rest[0][1] < self.cfg.second:
            return f"mostly {first}"
        return f"{first} and {rest[0][0]}"


class ColourChannel:
    """The main colours of the centre of the frame (fast); "c" says them for the frame at hand."""

    name, slow, key = "colour", False, "c"

    def __init__(self, setup: Setup):
        self.reader = ColourReader()

    def run(self, frame: np.ndarray, context: Context) -> Findings:
        colours, k = self.reader.read(frame)
        said = self.reader.said(colours)
        main = colours[0][0] if colours else ""
        return Findings(
            self.name,
            said=said,
            key=(main,),
            report={
                "colours": [{"name": n, "share": s} for n, s in colours[:4]],
                "white_balance_k": k,
            },
            value=colours,
        )


def usable(setup: Setup) -> str | None:
    return None
