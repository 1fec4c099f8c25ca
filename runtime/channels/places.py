"""Places, said: the third of the frame a thing is in, as words ("on your left", "ahead") or as
a clock position ("at 10 o'clock", the clock style).

The model layer measures where a thing is (a box, or runtime.model.where's centre of an
object's evidence as a share of the width); the channels say it with these.
"""

from __future__ import annotations

THIRDS = ("left", "ahead", "right")  # the frame's thirds, left to right
CLOCK = {"left": 10, "ahead": 12, "right": 2}  # each third as the hour it points to


def third_of(share: float) -> str:
    """left / ahead / right: the third of the frame a share of its width (0..1) falls in."""
    return THIRDS[min(2, max(0, int(share * 3)))]


def third(x0: float, x1: float, width: int) -> str:
    """left / ahead / right: the third of the frame the centre of [x0, x1] falls in (a text
    line's box, a detection's, a barcode's)."""
    return third_of((x0 + x1) / 2 / max(width, 1))


def spoken_place(where: str, style: str = "words") -> str:
    """'on your left' / 'ahead' / 'on your right' for a third, or 'at 10 o'clock' with style
    'clock'."""
    if style == "clock":
        return f"at {CLOCK[where]} o'clock"
    return "ahead" if where == "ahead" else f"on your {where}"
