"""The caption channel: the bundle's sentence about the whole scene, with its calibrated
confidence (runtime/model/captioner.py decodes it from the encoder pass every frame has).

The composer (runtime/channels/compose.py) states it only where the things it names were seen
by the other channels; alone, it is stated at the bundle's confidence threshold and hedged
("maybe ...") under it.
"""

from __future__ import annotations

import numpy as np

from runtime.channels.base import Context, Findings, Sentence, Setup
from runtime.errors import InputError


class CaptionChannel:
    name, slow, key = "caption", False, ""

    def __init__(self, setup: Setup):
        calibration = setup.bundle.confidence
        self.threshold = calibration["threshold"] if calibration else None

    def run(self, frame: np.ndarray, context: Context) -> Findings:
        c = context.caption
        if c is None:
            raise InputError("the caption channel: no caption for this frame")
        if not c.text:  # dropped as degenerate (the loop logs why): the others speak alone
            return Findings(self.name, key=("",))
        unsure = (
            self.threshold is not None
            and c.confidence is not None
            and c.confidence < self.threshold
        )
        return Findings(
            self.name,
            sentence=Sentence(c.text, c.confidence, self.threshold),
            key=(c.text, unsure),
            value=c,
        )


def usable(setup: Setup) -> str | None:
    return None
