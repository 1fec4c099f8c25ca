"""The composer: what the channels found (a caption with its confidence, the objects the
ImageNet head names) -> one utterance that never states two different things as facts.

    caption confident     "a cat is laying on a bed"             (objects add a sure name only
                                                                  when the caption lacks it)
    caption unsure        "I see a cat. Maybe a cat is laying on a bed"
    nothing at all        "nothing I can describe"

Reconciling: when the objects channel is sure of a thing (pooled probability >= its `sure`,
0.7) and the caption names another thing of the same kind (the bundle's `kinds` table, built
from WordNet at export: mammal, bird, wheeled vehicle, ...), the two are never both said as
facts. At REPLACE or more the caption's word is replaced by the object's name ("a dog is
licking its nose" with cat at 0.97 -> "a cat is licking its nose"); below it the caption stays
and the object is hedged ("a dog runs through water. maybe a bear"): on Flickr8k's dev photos
the ImageNet head called swimming dogs a bear or a hippopotamus at 0.73-0.74 and a white dog a
wolf at 0.70, and replacing at 0.7 lowered dev CIDEr (0.478 -> 0.475), at 0.95 did not.
"""

from __future__ import annotations

from dataclasses import dataclass, replace as _with

REPLACE = 0.95  # a sure object's least pooled score to replace a caption word (chosen on dev)

# Said when the caption is empty and no object is named either: silence would sound like a hang.
NOTHING = "nothing I can describe"


@dataclass(frozen=True)
class Description:
    text: str  # what is spoken
    key: tuple  # what must change for the change policy to speak again
    caption: str | None  # the caption as spoken (reconciled), None when the channel is off
    objects: object | None  # runtime.channels.objects.Objects, None when the channel is off
    confidence: float | None = None  # the caption's calibrated confidence, where the bundle has one
    hedged: bool = False  # the caption was under the bundle's threshold and said as "maybe ..."
    replaced: tuple[tuple[str, str], ...] = ()  # (caption word, object name) reconciled
    read: str | None = None  # what the text channel read, as spoken ("Sign: EXIT")
    lines: tuple = ()  # the text lines themselves (runtime.channels.text.TextLine), where read


def _article(words: list[str], i: int, name: str) -> None:
    """Fixes a/an before words[i] for `name` ("a unicycle", "an egret")."""
    if i > 0 and words[i - 1] in ("a", "an"):
        vowel = name[:1] in "aeiou" and not name.startswith(("uni", "use", "eu", "one"))
        words[i - 1] = "an" if vowel else "a"


def reconcile(caption: str, name: str, kinds: dict) -> tuple[str, tuple[tuple[str, str], ...]]:
    """caption with each word of the same kind as the sure object `name`, but another thing,
    replaced by `name` (its plural for a plural word). Words of other kinds stay, and so does a
    caption that names the object already ("a dog chases a cat": two animals, one of them seen)."""
    kind = kinds.get("objects", {}).get(name)
    table = kinds.get("words", {})
    if not kind or not caption or mentions(caption, name):
        return caption, ()
    words, replaced = caption.split(), []
    same = set(kinds.get("same", {}).get(name, ()))  # "puppy" and "collie" are dogs
    for i, w in enumerate(words):
        plural, found, base = False, table.get(w), w
        if found is None and w.endswith("s"):  # the table holds singular nouns
            base = w[:-2] if w.endswith("es") and w[:-2] in table else w[:-1]
            found, plural = table.get(base), base in table
        if found == kind and base not in same:
            words[i] = name + ("s" if plural else "")
            replaced.append((w, words[i]))
            _article(words, i, words[i])
    return (" ".join(words), tuple(replaced)) if replaced else (caption, ())


def mentions(caption: str, name: str) -> bool:
    """Whether the caption already names the object (or its plural)."""
    padded = f" {caption} "
    return any(f" {n} " in padded for n in (name, name + "s", name + "es"))


def compose(caption: str | None, confidence: float | None, objects, threshold: float | None,
            kinds: dict | None = None, read: str | None = None) -> Description:
    """One utterance from the channels that ran (None: that channel is off); `read` is what
    the text channel read, already in its spoken form ("Sign: EXIT"), said last."""
    replaced: tuple = ()
    conflict = False  # the head was sure of a thing the caption calls otherwise
    sure = objects is not None and objects.sure and objects.named
    if caption and sure and kinds:
        text, swaps = reconcile(caption, objects.named[0], kinds)
        if swaps and objects.top and objects.top[0]["score"] >= REPLACE:
            caption, replaced = text, swaps
        elif swaps:  # the two disagree, and the head is not sure enough to correct the caption
            objects = _with(objects, text="maybe " + objects.text.removeprefix("I see "), sure=False)
            sure, conflict = False, True
    hedged = bool(caption) and threshold is not None and confidence is not None and confidence < threshold
    parts: list[str] = []
    if threshold is None:  # a bundle without calibration: caption first, then the objects
        parts = [s for s in (caption, objects.text if objects is not None else None) if s]
    elif hedged:  # the objects lead; the caption is only a guess
        if objects is not None and objects.named:
            parts.append(objects.text)
        parts.append("maybe " + caption)
    else:
        if caption:
            parts.append(caption)
        if (sure and not (caption and mentions(caption, objects.named[0]))) or conflict:
            parts.append(objects.text)
        elif objects is not None and not caption:
            parts.append(objects.text)
    key = (caption, frozenset(objects.named) if objects is not None else None,
           objects.sure if objects is not None else None, hedged)
    said = with_read(". ".join(p for p in parts if p) or NOTHING, read)
    return Description(said, key, caption, objects, confidence, hedged, replaced, read or None)


def with_read(said: str, read: str | None) -> str:
    """A description with what the text channel read said last ("... . Sign: EXIT"); the text
    alone where nothing else was found."""
    if not read:
        return said
    return read if said in ("", NOTHING) else f"{said}. {read}"
