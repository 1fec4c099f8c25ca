"""Synthetic scenes: shapes on a 3x3 layout with captions from a small grammar.

    python -m export scenes --out data/scenes-train --n 12000 --seed 1

Each image is rendered with OpenCV at 224x224 and is fully determined by (seed, index), so the
first k scenes of any N are the same. The first caption of every scene is its canonical caption:
objects in reading order (row by row), with counts for identical objects and a spatial relation
for two different objects. The other captions are alternative phrasings, used as extra references.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

SIZE = 224
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
PLURALS = {"cross": "crosses"}
COLOURS = {  # RGB
    "red": (215, 35, 35),
    "orange": (245, 135, 15),
    "yellow": (245, 225, 30),
    "green": (30, 160, 55),
    "blue": (35, 75, 220),
    "purple": (135, 45, 175),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
RADII = {"small": 15, "large": 29}  # pixels at 224x224
POSITIONS = (
    ("in the top left", "at the top", "in the top right"),
    ("on the left", "in the centre", "on the right"),
    ("in the bottom left", "at the bottom", "in the bottom right"),
)
NUMBERS = {2: "two", 3: "three"}
BACKGROUNDS = ("plain", "gradient", "noise", "texture")


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    cell: int  # 0..8, row-major in the 3x3 layout

    @property
    def noun(self) -> str:
        return f"{self.size} {self.colour} {self.shape}"

    def plural(self) -> str:
        return f"{self.size} {self.colour} {PLURALS.get(self.shape, self.shape + 's')}"


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]  # in reading order
    background: str

    def captions(self) -> list[str]:
        """Canonical caption first, then alternative phrasings."""
        objs = self.objects
        groups: dict[str, list[SceneObject]] = {}
        for o in objs:
            groups.setdefault(o.noun, []).append(o)
        if len(objs) == 1:
            o = objs[0]
            where = POSITIONS[o.cell // 3][o.cell % 3]
            return [f"a {o.noun} {where}", f"there is a {o.noun} {where}", f"a {o.noun}"]
        if len(groups) == 1:
            n, o = len(objs), objs[0]
            return [f"{NUMBERS[n]} {o.plural()}", f"{NUMBERS[n]} {o.plural()} in the picture"]
        if len(objs) == 2:
            a, b = objs
            if a.cell // 3 < b.cell // 3:
                rel, inverse = "above", "below"
            else:
                rel, inverse = "to the left of", "to the right of"
            return [
                f"a {a.noun} {rel} a {b.noun}",
                f"a {b.noun} {inverse} a {a.noun}",
                f"a {a.noun} and a {b.noun}",
            ]
        parts = [
            f"a {g[0].noun}" if len(g) == 1 else f"{NUMBERS[len(g)]} {g[0].plural()}"
            for g in groups.values()
        ]
        listed = ", ".join(parts[:-1]) + " and " + parts[-1]
        return [listed, f"there are {listed}"]


def sample_scene(rng: np.random.Generator) -> Scene:
    n = int(rng.choice([1, 2, 3], p=[0.3, 0.35, 0.35]))
    cells = sorted(int(c) for c in rng.choice(9, size=n, replace=False))
    kinds = [
        (str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS))), str(rng.choice(list(RADII))))
        for _ in range(n)
    ]
    if n > 1 and rng.random() < 0.3:  # identical objects, so counts appear in captions
        k = n if rng.random() < 0.5 else 2
        kinds[1:k] = [kinds[0]] * (k - 1)
    objects = tuple(SceneObject(s, c, z, cell) for (s, c, z), cell in zip(kinds, cells))
    return Scene(objects, str(rng.choice(BACKGROUNDS)))


def _background(kind: str, rng: np.random.Generator) -> np.ndarray:
    def tone() -> np.ndarray:  # desaturated mid-tones, so every object colour stands out
        return rng.uniform(95, 165) + rng.uniform(-18, 18, size=3)

    img = np.empty((SIZE, SIZE, 3), np.float32)
    img[:] = tone()
    if kind == "gradient":
        t = np.linspace(0, 1, SIZE, dtype=np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * t[None, :] + np.sin(angle) * t[:, None]
        ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
        img = img * (1 - ramp[..., None]) + tone() * ramp[..., None]
    elif kind == "noise":
        noise = rng.normal(0, 14, size=(SIZE // 4, SIZE // 4, 3)).astype(np.float32)
        img += cv2.resize(noise, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    elif kind == "texture":
        period = int(rng.integers(10, 28))
        yy, xx = np.mgrid[0:SIZE, 0:SIZE]
        if rng.random() < 0.5:
            pattern = ((xx // period + yy // period) % 2).astype(np.float32)
        else:
            pattern = np.sin((xx * np.cos(rng.uniform(0, np.pi)) + yy) * 2 * np.pi / period) > 0
        img += (pattern.astype(np.float32) - 0.5)[..., None] * rng.uniform(12, 26)
    return img


def _polygon(shape: str, x: float, y: float, r: float) -> np.ndarray:
    if shape == "square":
        s = 0.82 * r
        pts = [(-s, -s), (s, -s), (s, s), (-s, s)]
    elif shape == "diamond":
        pts = [(0, -r), (r, 0), (0, r), (-r, 0)]
    elif shape == "triangle":
        pts = [(r * np.cos(a), r * np.sin(a) + 0.15 * r) for a in np.radians([-90, 30, 150])]
    elif shape == "star":
        angles = np.radians(np.arange(10) * 36 - 90)
        radii = np.where(np.arange(10) % 2 == 0, r, 0.42 * r)
        pts = list(zip(radii * np.cos(angles), radii * np.sin(angles)))
    elif shape == "cross":
        a, b = 0.3 * r, r
        pts = [
            (-a, -b),
            (a, -b),
            (a, -a),
            (b, -a),
            (b, a),
            (a, a),
            (a, b),
            (-a, b),
            (-a, a),
            (-b, a),
            (-b, -a),
            (-a, -a),
        ]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.round((np.array(pts) + (x, y)) * 16).astype(np.int32)  # 4 fractional bits


def render(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Draw a scene as a 224x224 BGR uint8 image with mild lighting, blur and noise jitter."""
    img = _background(scene.background, rng)
    cell = SIZE / 3
    for o in scene.objects:
        r = RADII[o.size] * rng.uniform(0.92, 1.08)
        x = (o.cell % 3 + 0.5) * cell + rng.uniform(-6, 6)
        y = (o.cell // 3 + 0.5) * cell + rng.uniform(-6, 6)
        colour = np.clip(np.array(COLOURS[o.colour][::-1]) + rng.uniform(-12, 12, 3), 0, 255)
        if o.shape == "circle":
            cv2.circle(
                img,
                (round(x * 16), round(y * 16)),
                round(r * 16),
                colour.tolist(),
                -1,
                cv2.LINE_AA,
                shift=4,
            )
        else:
            cv2.fillPoly(img, [_polygon(o.shape, x, y, r)], colour.tolist(), cv2.LINE_AA, shift=4)
    img = img * rng.uniform(0.85, 1.15) + rng.uniform(-12, 12)  # lighting
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.9))
    img += rng.normal(0, rng.uniform(0, 5), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_scene(seed: int, index: int) -> tuple[np.ndarray, list[str]]:
    """The scene number `index` of the set with this seed: (BGR image, captions)."""
    rng = np.random.default_rng([seed, index])
    scene = sample_scene(rng)
    return render(scene, rng), scene.captions()


def write_scenes(out: Path, n: int, seed: int) -> Path:
    """Render n scenes into out/images and write out/captions.jsonl; returns its path."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    index = out / "captions.jsonl"
    with open(index, "w") as f:
        for i in tqdm(range(n), desc=f"scenes seed={seed}", unit="img"):
            img, captions = make_scene(seed, i)
            rel = f"images/{seed:04d}-{i:06d}.png"
            cv2.imwrite(str(out / rel), img)
            f.write(json.dumps({"image": rel, "captions": captions}) + "\n")
    (out / "scenes.json").write_text(
        json.dumps({"generator": "export.scenes", "n": n, "seed": seed})
    )
    return index


def write_clip(out: Path, scenes: int, seed: int, seconds: float = 2.0, fps: int = 15) -> Path:
    """A video of `scenes` synthetic scenes, each held for `seconds`, with a sidecar
    `<out>.jsonl` of each scene's first frame and canonical caption."""
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (SIZE, SIZE))
    if not writer.isOpened():
        raise RuntimeError(f"{out}: OpenCV cannot write mp4v video here")
    per_scene = round(seconds * fps)
    with open(out.with_suffix(".jsonl"), "w") as f:
        for i in tqdm(range(scenes), desc="clip", unit="scene"):
            img, captions = make_scene(seed, i)
            f.write(json.dumps({"frame": i * per_scene, "caption": captions[0]}) + "\n")
            rng = np.random.default_rng([seed, i, 1])
            for _ in range(per_scene):  # sensor noise, so frames differ like a real camera's
                noisy = img.astype(np.float32) + rng.normal(0, 1.5, img.shape)
                writer.write(np.clip(noisy, 0, 255).astype(np.uint8))
    writer.release()
    return out
