"""The light channel: how much light there is and where it comes from, so a user can find a
window or check that a lamp is on.

    "dark"                                  mean grey level under `dark`
    "dim, bright light on your right"       a bright region in one third of the frame
    "bright"
    "lights off"                            a sudden fall into the dark, said once

Levels are the mean grey level of the frame (0..255, as the camera gives it). The brightest
third (left, ahead, right) is named where its brightest pixels are near white and its mean is
clearly over the darkest third's. A sudden change between two described frames (the light
falling to under a third, into the dark, or rising three-fold out of it) is "lights off" or
"lights on": said with the level it lands on, and kept while the level stays, so a change
policy says it once.

It is fast (under a millisecond a frame) and runs on every described frame; manual mode's "l"
says it for the frame at hand whichever channels are on.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from runtime.channels.base import Context, Findings, Setup
from runtime.channels.places import THIRDS, spoken_place
from runtime.options import check, number


@dataclass(frozen=True)
class LightConfig:
    dark: float = 30.0  # a frame whose mean grey level is under this is dark
    dim: float = 85.0  # under this, dim; at it and over, bright
    source: float = 215.0  # a third whose brightest pixels reach this holds a light
    contrast: float = 1.5  # ... when its mean is this many times the darkest third's
    sudden: float = 3.0  # a fall (or rise) by this factor between described frames is sudden

    def __post_init__(self):
        check(self, "dark", number(self.dark) and 0 < self.dark < 255, "use 0..255")
        check(self, "dim", number(self.dim) and self.dark < self.dim < 255, "use dark..255")
        check(self, "source", number(self.source) and 0 < self.source <= 255, "use 0..255")
        check(self, "contrast", number(self.contrast) and self.contrast >= 1, "use 1 or more")
        check(self, "sudden", number(self.sudden) and self.sudden > 1, "use more than 1")


@dataclass(frozen=True)
class Light:
    level: str  # dark | dim | bright
    mean: float  # mean grey level, 0..255
    brightest: str | None  # left | ahead | right where a light is, else None
    change: str | None  # "lights off" | "lights on" where the level changed suddenly

    def as_json(self) -> dict:
        return {
            "level": self.level,
            "mean": round(self.mean, 1),
            "brightest": self.brightest,
            "change": self.change,
        }


class LightMeter:
    def __init__(self, cfg: LightConfig = LightConfig()):
        self.cfg = cfg
        self.last: tuple[str, float] | None = None  # (level, mean) of the last frame measured
        self.change: str | None = None  # a sudden change, kept while its level stays

    def level(self, mean: float) -> str:
        return "dark" if mean < self.cfg.dark else "dim" if mean < self.cfg.dim else "bright"

    def measure(self, frame: np.ndarray, remember: bool = True) -> Light:
        """8-bit BGR -> its Light; with `remember`, against the frame measured before it."""
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        small = cv2.resize(gray, (96, 72), interpolation=cv2.INTER_AREA).astype(np.float32)
        mean = float(small.mean())
        level = self.level(mean)
        thirds = np.array_split(small, 3, axis=1)
        means = [float(t.mean()) for t in thirds]
        tops = [float(np.percentile(t, 98)) for t in thirds]
        best = int(np.argmax(means))
        lit = tops[best] >= self.cfg.source and means[best] >= self.cfg.contrast * max(
            min(means), 1.0
        )
        change = self.change
        if self.last is not None:
            before, was = self.last[1], self.last[0]
            if level != was:
                change = None
                if level == "dark" and mean * self.cfg.sudden <= before:
                    change = "lights off"
                elif was == "dark" and mean >= self.cfg.sudden * max(before, 1.0):
                    change = "lights on"
        if remember:
            self.last, self.change = (level, mean), change
        return Light(level, mean, THIRDS[best] if lit else None, change if remember else None)


def spoken(light: Light, style: str = "words") -> str:
    said = (
        light.change
        if light.change == "lights off"
        else (f"{light.change}, {light.level}" if light.change else light.level)
    )
    if light.brightest:
        said += f", bright light {spoken_place(light.brightest, style)}"
    return said


class LightChannel:
    """Dark, dim or bright, and where a light is (fast); "l" says it for the frame at hand."""

    name, slow, key = "light", False, "l"

    def __init__(self, setup: Setup):
        self.meter = LightMeter()

    def run(self, frame: np.ndarray, context: Context) -> Findings:
        light = self.meter.measure(frame, remember=not context.everything)
        return Findings(
            self.name,
            said=spoken(light, context.where),
            key=(light.level,),
            report={"light": light.as_json()},
            value=light,
        )


def usable(setup: Setup) -> str | None:
    return None
