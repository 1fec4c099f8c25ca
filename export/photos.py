"""The committed real photos: scikit-image's public-domain and CC0 ones, as the benchmark's
default image set (assets/photos) and the real-photo sample clip (assets/sample_photos.mp4).

    python -m export photos --out assets/photos --clip assets/sample_photos.mp4

Only photos whose scikit-image docstring states no copyright restriction are used; each one's
note is copied into assets/photos/README.md. The stereo motorcycle (Middlebury 2014) states no
licence, so it is read from the installed wheel in tests and never committed.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

# name -> (scikit-image loader, what it shows, licence note from its docstring)
PHOTOS = {
    "chelsea": (
        "chelsea",
        "a cat",
        "No copyright restrictions. CC0 by the photographer (Stefan van der Walt).",
    ),
    "coffee": (
        "coffee",
        "a cup of coffee on a saucer",
        "No copyright restrictions. CC0 by the photographer (Rachel Michetti); courtesy of "
        "Pikolo Espresso Bar.",
    ),
    "astronaut": (
        "astronaut",
        "astronaut Eileen Collins in front of a flag",
        "NASA Great Images database: no known copyright restrictions, released into the "
        "public domain.",
    ),
    "rocket": (
        "rocket",
        "a Falcon 9 rocket on its launch pad",
        "SpaceX photo, released by SpaceX into the public domain.",
    ),
    "camera": (
        "camera",
        "a person with a camera on a tripod (gray)",
        "No copyright restrictions. CC0 by the photographer (Lav Varshney).",
    ),
}
CLIP_SIZE = (640, 480)  # a webcam's frame; the runtime resizes it whole to 224x224


def load(name: str) -> np.ndarray:
    """The photo as 8-bit BGR at its original size, from the installed scikit-image."""
    import skimage.data

    img = getattr(skimage.data, PHOTOS[name][0])()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR)


def write_photos(out: Path) -> Path:
    """Each photo as JPEG (quality 90) with a README citing its licence note."""
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Real photos (scikit-image sample data)",
        "",
        "The benchmark's default images and the frames of `../sample_photos.mp4`, written by",
        "`python -m export photos` from the scikit-image wheel. Each licence note is the one in",
        "its `skimage.data` docstring.",
        "",
        "| file | shows | licence |",
        "|---|---|---|",
    ]
    for name, (_, shows, licence) in PHOTOS.items():
        cv2.imwrite(str(out / f"{name}.jpg"), load(name), [cv2.IMWRITE_JPEG_QUALITY, 90])
        lines.append(f"| {name}.jpg | {shows} | {licence} |")
    (out / "README.md").write_text("\n".join(lines) + "\n")
    return out


def write_photo_clip(out: Path, seconds: float = 2.0, fps: int = 15) -> Path:
    """A video of the photos, each held for `seconds` with a little sensor noise, and a sidecar
    `<out>.jsonl` of each photo's first frame and name."""
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, CLIP_SIZE)
    if not writer.isOpened():
        raise RuntimeError(f"{out}: OpenCV cannot write mp4v video here")
    per = round(seconds * fps)
    with open(out.with_suffix(".jsonl"), "w") as f:
        for i, name in enumerate(tqdm(PHOTOS, desc="clip", unit="photo")):
            img = cv2.resize(load(name), CLIP_SIZE, interpolation=cv2.INTER_AREA)
            f.write(json.dumps({"frame": i * per, "photo": name, "shows": PHOTOS[name][1]}) + "\n")
            rng = np.random.default_rng([i, 1])
            for _ in range(per):
                noisy = img.astype(np.float32) + rng.normal(0, 1.5, img.shape)
                writer.write(np.clip(noisy, 0, 255).astype(np.uint8))
    writer.release()
    return out
