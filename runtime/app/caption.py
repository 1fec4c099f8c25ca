"""The caption command: each image file in, its description out (a tab line, or JSON).

for path, line, error in caption_files(paths, channels, as_json=True):
    print(error or json.dumps(line))
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from runtime.errors import InputError, printable
from runtime.model.preprocess import read_image, to_bgr8


def caption_files(paths, channels, as_json: bool = False) -> Iterator[tuple[str | None, str]]:
    """(its line, a one-line warning or '') for each image: `path<TAB>description` with the
    control characters of both escaped, or the JSON object with timings; an image that cannot
    be read is (None, its error)."""
    for path in paths:
        try:
            frame = read_image(path)
        except InputError as e:
            yield None, str(e)
            continue
        result, d = channels.describe(to_bgr8(frame))
        warning = f"{path}: caption dropped ({result.dropped})" if result.dropped else ""
        if not as_json:
            yield f"{printable(path)}\t{printable(d.text)}", warning
            continue
        conf = None if result.confidence is None else round(result.confidence, 4)
        timings = {k: round(v, 3) for k, v in result.timings_ms.items()}
        line = {
            "image": path,
            "caption": result.text,
            "confidence": conf,
            "description": d.text,
            "steps": result.steps,
            "timings_ms": timings,
            **d.report(),
        }
        yield json.dumps(line), warning
