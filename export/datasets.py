"""Caption dataset readers. Every reader returns `Sample(image_path, captions)` records.

A dataset is named by one spec string, `[FORMAT:]PATH[@IMAGES][#SPLIT]`:

    data/scenes-train                                        JSONL (what `export scenes` writes)
    coco:annotations/captions_train2017.json@images/train2017
    karpathy:dataset_coco.json@coco-images#train             Karpathy split (train = train+restval)
    karpathy:dataset_flickr8k.json@Flicker8k_Dataset#test
    flickr8k:Flickr8k.token.txt@Flicker8k_Dataset#train      split: train|dev|test or a names file

Several specs joined by commas are one dataset, their samples in order (`read_datasets` keeps
them apart, for a score per validation set). Without FORMAT it is guessed from the file.
Relative IMAGES and split files are taken from the annotation file's folder. The generic JSONL
is one `{"image": "relative/path.png", "captions": [str, ...]}` per line, paths relative to the
file's folder. A reader checks that every image exists, so a wrong images folder is one clear
error, not a crash mid-training.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import InputError

FORMATS = ("jsonl", "coco", "karpathy", "flickr8k")
FLICKR_SPLITS = {
    "train": "Flickr_8k.trainImages.txt",
    "dev": "Flickr_8k.devImages.txt",
    "val": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}


@dataclass(frozen=True)
class Sample:
    image: Path
    captions: tuple[str, ...]


@dataclass(frozen=True)
class DatasetSpec:
    format: str  # one of FORMATS
    path: Path  # the annotation file (or a JSONL folder)
    images: Path | None = None  # image root for coco / karpathy / flickr8k
    split: str | None = None  # karpathy: train|val|test|restval; flickr8k: train|dev|test or a file

    @classmethod
    def parse(cls, spec: str) -> DatasetSpec:
        fmt, rest = spec.split(":", 1) if spec.split(":", 1)[0] in FORMATS else (None, spec)
        rest, split = rest.split("#", 1) if "#" in rest else (rest, None)
        path, images = rest.split("@", 1) if "@" in rest else (rest, None)
        path = Path(path)
        if not path.exists():
            raise InputError(f"{spec}: {path} does not exist")
        fmt = fmt or _guess(path)
        folder = path.parent if path.is_file() else path
        return cls(fmt, path, (folder / images) if images else None, split or None)


def _guess(path: Path) -> str:
    if path.is_dir() or path.suffix == ".jsonl":
        return "jsonl"
    if path.suffix == ".txt":
        return "flickr8k"
    if path.suffix == ".json":
        head = _load_json(path)
        if isinstance(head, dict) and "annotations" in head:
            return "coco"
        if isinstance(head, dict) and head.get("images") and "sentences" in head["images"][0]:
            return "karpathy"
    raise InputError(
        f"{path}: cannot tell the dataset format; write it as FORMAT:{path} "
        f"with FORMAT one of {', '.join(FORMATS)}"
    )


def _load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not readable JSON ({e})") from None


def _checked(samples: list[Sample], where: Path) -> list[Sample]:
    if not samples:
        raise InputError(f"{where}: no images with captions")
    missing = [s.image for s in samples if not s.image.is_file()]
    if missing:
        raise InputError(
            f"{where}: {len(missing)} of {len(samples)} images are missing, "
            f"e.g. {missing[0]} (is the images folder right?)"
        )
    return samples


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


def read_coco(path: Path, images: Path | None) -> list[Sample]:
    """COCO captions (captions_train2017.json): images[] with file_name, annotations[] with
    image_id and caption."""
    d = _load_json(path)
    try:
        names = {im["id"]: im["file_name"] for im in d["images"]}
        caps: dict[int, list[str]] = defaultdict(list)
        for a in d["annotations"]:
            caps[a["image_id"]].append(a["caption"].strip())
    except (KeyError, TypeError) as e:
        raise InputError(f"{path}: not a COCO captions file (missing {e})") from None
    root = images or path.parent
    return _checked(
        [Sample(root / names[i], tuple(c)) for i, c in caps.items() if i in names], path
    )


def read_karpathy(path: Path, images: Path | None, split: str | None) -> list[Sample]:
    """Karpathy's split file (dataset_coco.json, dataset_flickr8k.json): images[] with
    filename, optional filepath, split and sentences[].raw. Split train includes restval."""
    d = _load_json(path)
    wanted = {"train", "restval"} if split == "train" else {split} if split else None
    root = images or path.parent
    try:
        samples = [
            Sample(
                root / im.get("filepath", "") / im["filename"],
                tuple(s["raw"].strip() for s in im["sentences"]),
            )
            for im in d["images"]
            if wanted is None or im["split"] in wanted
        ]
    except (KeyError, TypeError) as e:
        raise InputError(f"{path}: not a Karpathy split file (missing {e})") from None
    return _checked(samples, path)


def read_flickr8k(path: Path, images: Path | None, split: str | None) -> list[Sample]:
    """Flickr8k.token.txt (`name.jpg#k<TAB>caption`) with an optional split file of names.

    The original file's quirks are handled, not fatal: a key separated from its caption by a
    space instead of a tab (line 1), caption lines of a photo that does not exist, one-word
    captions ("A") and the trailing " ." of every caption. What was left out is reported in one
    summary line on stderr."""
    caps: dict[str, list[str]] = defaultdict(list)
    one_word = 0
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable Flickr8k token file ({e})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        key, sep, caption = line.partition("\t")
        if not sep:  # the original line 1: "name.jpg#0 A child ..."
            key, sep, caption = line.partition(" ")
        name, hash_, k = key.strip().rpartition("#")
        if not sep or not hash_ or not name or not k.isdigit():
            raise InputError(f"{path}:{n}: not a Flickr8k token line (name.jpg#k<TAB>caption)")
        caption = caption.strip()
        caption = caption[:-1].rstrip() if caption.endswith(".") else caption
        if len(caption.split()) < 2:
            one_word += 1
            continue
        caps[name].append(caption)
    names = list(caps)
    if split:
        split_file = path.parent / FLICKR_SPLITS.get(split, split)
        if not split_file.is_file():
            raise InputError(
                f"{split_file}: no such split file (train, dev, test or a file of names)"
            )
        keep = [l.strip() for l in split_file.read_text().splitlines() if l.strip()]
        names = [n for n in keep if n in caps]
    root = images or path.parent
    found = [n for n in names if (root / n).is_file()]
    if names and not found:
        return _checked([Sample(root / n, tuple(caps[n])) for n in names], path)
    missing = set(names) - set(found)
    skipped = (
        [
            f"{sum(len(caps[n]) for n in missing)} caption lines of {len(missing)} names "
            "with no photo"
        ]
        if missing
        else []
    )
    skipped += [f"{one_word} one-word captions"] if one_word else []
    if skipped:
        print(f"note: {path.name}: skipped {' and '.join(skipped)}", file=sys.stderr)
    return _checked([Sample(root / n, tuple(caps[n])) for n in found], path)


def read_datasets(specs: str) -> list[tuple[str, list[Sample]]]:
    """(label, samples) of each of the comma-joined specs, in order; the label is the
    annotation file's folder and name, and the split ("flickr8k/Flickr8k.token.txt#dev",
    "coco-everyday/dev.jsonl")."""
    parts = [p.strip() for p in specs.split(",")]
    if not all(parts):
        raise InputError(f"{specs!r}: an empty dataset spec (specs are joined by single commas)")
    parsed = [DatasetSpec.parse(part) for part in parts]
    if len(set(parsed)) < len(parsed):
        raise InputError(f"{specs!r}: names the same dataset twice")
    out: list[tuple[str, list[Sample]]] = []
    for d in parsed:
        label = f"{d.path.resolve().parent.name}/{d.path.name}" if d.path.is_file() else d.path.name
        label += f"#{Path(d.split).name}" if d.split else ""
        if any(label == name for name, _ in out):
            label += f" ({len(out) + 1})"  # two folders of the same name: told apart by place
        out.append((label, read_dataset(d)))
    return out


def read_dataset(spec: str | DatasetSpec) -> list[Sample]:
    """Samples of a dataset spec (see the module docstring); comma-joined specs: all of their
    samples, in order."""
    if isinstance(spec, str) and "," in spec:
        return [s for _, samples in read_datasets(spec) for s in samples]
    d = spec if isinstance(spec, DatasetSpec) else DatasetSpec.parse(spec)
    if d.format == "jsonl":
        return read_jsonl(d.path)
    if d.format == "coco":
        return read_coco(d.path, d.images)
    if d.format == "karpathy":
        return read_karpathy(d.path, d.images, d.split)
    return read_flickr8k(d.path, d.images, d.split)


def in_turn(specs: str, n: int) -> list[Sample]:
    """The first n samples of a dataset, or of several comma-joined ones taken in turn, so that
    int8 is calibrated (and an export validated) on every domain the model will see."""
    sets = [part for _, part in read_datasets(specs)]
    turns = [part[i] for i in range(max(map(len, sets))) for part in sets if i < len(part)]
    return turns[:n]
