"""The caption command: each image file in, its description out (a tab line, or JSON).

    for path, line, error in caption_files(paths, channels, as_json=True):
        print(error or json.dumps(line))
"""

from __future__ import annotations

from collections.abc import Iterator

from runtime.errors import InputError
from runtime.model.preprocess import read_image, to_bgr8


def caption_files(paths, channels, as_json: bool = False) -> Iterator[tuple[str, object, str]]:
    """(path, its description: the text, or the JSON object with timings; a one-line warning
    or '') for each image; an image that cannot be read is (path, None, its error)."""
    for path in paths:
        try:
            frame = read_image(path)
        except InputError as e:
            yield path, None, str(e)
            continue
        result, d = channels.describe(to_bgr8(frame))
        warning = f"{path}: caption dropped ({result.dropped})" if result.dropped else ""
        if not as_json:
            yield path, d.text, warning
            continue
        conf = None if result.confidence is None else round(result.confidence, 4)
        yield path, {"image": path, "caption": result.text, "confidence": conf,
                     "description": d.text, "steps": result.steps,
                     "timings_ms": {k: round(v, 3) for k, v in result.timings_ms.items()},
                     **d.report()}, warning
