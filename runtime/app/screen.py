"""`describe --show`: the frame, the caption and where the model looked for each word.

The attention of one word at a time is drawn as a heatmap over the frame, stepping through the
caption. Needs an OpenCV with a GUI backend; the pip `opencv-python-headless` has none, so then
it warns once and the loop runs on without a window.
"""

from __future__ import annotations

import time

import cv2
import numpy as np


def attention_overlay(frame: np.ndarray, alpha: np.ndarray, size: int = 448) -> np.ndarray:
    """BGR frame + attention (49,) over the 7x7 regions -> BGR image size x size."""
    img = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    grid = alpha.reshape(7, 7).astype(np.float32)
    grid = grid / (grid.max() or 1.0)
    heat = cv2.applyColorMap(
        (cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(
            np.uint8
        ),
        cv2.COLORMAP_JET,
    )
    return cv2.addWeighted(img, 0.55, heat, 0.45, 0)


class Screen:
    WORD_S = 0.4  # each word's attention stays on screen this long

    def __init__(self, warn, title: str = "SceneSpeak"):
        self.title, self.warn, self.enabled = title, warn, True
        self.caption, self.alphas, self.since = "", None, 0.0

    def set_caption(self, caption) -> None:
        """A new `Caption` from the captioner; drawn with the next frame."""
        self.caption, self.alphas, self.since = caption.text, caption.alphas, time.monotonic()

    def update(self, frame: np.ndarray) -> None:
        """Draw one frame with the current caption's attention."""
        if not self.enabled:
            return
        words = self.caption.split()
        if self.alphas is not None and words:
            i = int((time.monotonic() - self.since) / self.WORD_S) % len(words)
            view = attention_overlay(frame, self.alphas[i])
            label = " ".join(f"[{w}]" if j == i else w for j, w in enumerate(words))
        else:
            view, label = cv2.resize(frame, (448, 448)), "..."
        cv2.rectangle(view, (0, 448 - 30), (448, 448), (0, 0, 0), -1)
        cv2.putText(
            view,
            label,
            (6, 448 - 9),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        try:
            cv2.imshow(self.title, view)
            cv2.waitKey(1)
        except cv2.error:
            self.enabled = False
            self.warn(
                "--show needs an OpenCV with a GUI, which the headless wheel SceneSpeak "
                "installs has not (on a desktop, the system's OpenCV: see docs/runtime.md); "
                "running without a window"
            )

    def close(self) -> None:
        if self.enabled:
            try:
                cv2.destroyAllWindows()
            except cv2.error:
                pass
