"""Kinds of things, for reconciling a caption with the objects channel
(runtime/channels/compose.py).

A caption that says "dog" while the ImageNet head is sure of "cat" states two different
animals as facts. Both words are mapped to a kind, the first of KINDS among the WordNet 3.0
hypernyms of their most frequent noun sense (Debian `wordnet-base`: index.noun orders senses
by frequency), and the runtime replaces a caption word by the sure object's name only when
both are of one kind. Words of no kind (people, places, colours, actions) are never touched.
`python -m export onnx` writes the table into the manifest of a bundle trained on real photos.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from export.objects import WORDNET, WordNet, imagenet_classes, spoken_names

# WordNet 3.0 noun synsets (offsets) that name a kind: within one, two different words are two
# different things a photo cannot both be ("dog" / "cat", "bike" / "motorcycle")
KINDS = {
    "01861778": "mammal",
    "01503061": "bird",
    "02512053": "fish",
    "01661091": "reptile",
    "02159955": "insect",
    "04576211": "wheeled vehicle",
    "04530566": "watercraft",
    "02686568": "aircraft",
}
DEPTH = 20  # hypernym levels searched
PEOPLE = ("02471762",)  # hominids: under mammal in WordNet, but a caption's "human" is a person


def first_senses(root: Path = WORDNET) -> dict[str, str]:
    """Noun lemma -> offset of its most frequent sense (index.noun lists senses in that order)."""
    out = {}
    for line in (root / "index.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):
            continue  # the licence header
        f = line.split()
        n_synsets, n_pointers = int(f[2]), int(f[3])
        offsets = f[6 + n_pointers : 6 + n_pointers + n_synsets]
        if offsets:
            out[f[0]] = offsets[0]
    return out


def kind_of(offset: str, wn: WordNet) -> str | None:
    for synset, _ in wn.ancestors(offset, DEPTH):
        if synset in PEOPLE:
            return None
        if synset in KINDS:
            return KINDS[synset]
    return None


def build(words: list[str], root: Path = WORDNET) -> dict:
    """{"words": {caption word: kind}, "objects": {spoken object name: kind}, "same": {spoken
    object name: [caption words for the same thing]}}: the caption vocabulary's nouns
    (singular forms) and the objects channel's names that have a kind. A caption word is the
    same thing as an object when one's synset lies above the other's ("puppy" and "collie"
    under dog): such words are never replaced by that name."""
    wn = WordNet(root)
    senses = first_senses(root)
    table, lineage = {}, {}
    for w in words:
        offset = senses.get(w)
        kind = kind_of(offset, wn) if offset else None
        if kind:
            table[w] = kind
            lineage[w] = offset, {a for a, _ in wn.ancestors(offset, DEPTH)}
    wnids, clean = imagenet_classes()
    votes: dict[str, Counter] = {}
    same: dict[str, set] = {}
    for wnid, name in zip(wnids, spoken_names(wnids, clean, wn)):
        kind = kind_of(wnid[1:], wn)
        if not kind:
            continue
        votes.setdefault(name, Counter())[kind] += 1
        above = {a for a, _ in wn.ancestors(wnid[1:], DEPTH)}  # "bird" is an egret too
        own = {wnid[1:], senses.get(name.replace(" ", "_"))}  # the class, and the name's sense
        same.setdefault(name, set()).update(
            w
            for w, (offset, ancestors) in lineage.items()
            if table[w] == kind and (offset in above or own & ancestors)
        )
    objects = {name: c.most_common(1)[0][0] for name, c in votes.items()}
    return {
        "source": "WordNet 3.0 first noun senses (export/kinds.py)",
        "words": table,
        "objects": objects,
        "same": {n: sorted(w) for n, w in same.items() if w},
    }
