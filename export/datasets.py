"""Caption dataset readers. Every reader yields `Sample(image_path, captions)`.

The generic format is JSONL, one `{"image": "relative/path.png", "captions": [str, ...]}` per
line, paths relative to the file's folder; it is what `python -m export scenes` writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import InputError


@dataclass(frozen=True)
class Sample:
    image: Path
    captions: tuple[str, ...]


def read_jsonl(path: str | Path) -> list[Sample]:
    path = Path(path)
    if path.is_dir():
        path = path / "captions.jsonl"
    if not path.is_file():
        raise InputError(f"{path}: no such caption file")
    samples = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                samples.append(Sample(path.parent / row["image"], tuple(row["captions"])))
            except (ValueError, KeyError, TypeError) as e:
                raise InputError(f"{path}:{n}: not a caption record ({e})") from None
    return samples
