"""The composer: the findings of every channel (runtime/channels/base.py) -> one utterance that
states only what was verified, most useful first, and never two different things of one kind.

    facts              "I see two people ahead, a table on your left and a cup"
    a verified caption "a man is sitting at a table with a laptop. I see a cup on your right"
    one guess (brief)  "... maybe a man is cutting a cake"
    read text, last    "... Sign: EXIT"
    nothing at all     "nothing I can describe"

What is stated:
- A fact of a channel that covers COCO's classes (the detector) is stated. The ImageNet head's
  sure names are stated too, but one that names a COCO class is stated only where the
  detector saw that class (then the detector's count and place are said) or glimpsed it
  (two models agree: the head's name is said); where the detector ran and did not see it at
  all, it is a guess. Without the detector, they are stated as they were.
- The caption is stated only when every COCO thing it names was seen as a fact (and, with a
  calibration, its confidence is at the bundle's threshold). It is a guess when the things it
  names that were not seen as facts were at least glimpsed (a detection under the fact
  threshold, `support`); it is left out when it names a thing the detector did not see at
  all, or one of the same group as a thing it did see ("dog" where a giraffe was detected).
- Without the detector: the caption is stated at its threshold and a guess under it, as it was.
- At most `guesses` "maybe" sentences (one in brief): the caption's first, else the best
  guessed things ("maybe a cup or a bowl").

Reconciling with the ImageNet head: when it is sure of a thing (pooled probability >= 0.7) and
the caption names another thing of the same kind (the bundle's `kinds` table, built from
WordNet at export: mammal, bird, wheeled vehicle, ...), the two are never both said as facts.
At REPLACE or more the caption's word is replaced by the object's name ("a dog is licking its
nose" with cat at 0.97 -> "a cat is licking its nose"); below it the caption stays and the
object is hedged ("a dog runs through water. maybe a bear"): on Flickr8k's dev photos the head
called swimming dogs a bear or a hippopotamus at 0.73-0.74, and replacing at 0.7 lowered dev
CIDEr (0.478 -> 0.475), at 0.95 did not.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from runtime.channels import coco
from runtime.channels.base import Findings, Sentence, Thing

REPLACE = 0.95  # a sure object's least pooled score to replace a caption word (chosen on dev)

# Said when no channel found anything to say: silence would sound like a hang.
NOTHING = "nothing I can describe"


@dataclass(frozen=True)
class ComposeConfig:
    facts: int = 3  # things stated at most (brief), each with its count and place
    facts_beside_caption: int = 2  # things stated at most after a stated caption (brief)
    guesses: int = 1  # "maybe" sentences at most (brief)
    guessed_names: int = 2  # names in one guess at most ("maybe a cup or a bowl")
    hedge_floor: float = 0.15  # with the detector, a caption under this confidence is left
    # out, not hedged (chosen on the COCO-everyday dev photos: README, "Truth")
    guess_beside_facts: bool = False  # guessed things are said beside stated ones (brief:
    # only where nothing is stated)
    place_guesses: bool = False  # say where a guessed thing is, where its channel knows

    @staticmethod
    def full() -> ComposeConfig:
        return ComposeConfig(
            facts=8,
            facts_beside_caption=6,
            guesses=2,
            guessed_names=3,
            hedge_floor=0.0,
            guess_beside_facts=True,
            place_guesses=True,
        )


@dataclass(frozen=True)
class Description:
    text: str  # what is spoken
    key: tuple  # what must change for the change policy to speak again
    findings: tuple[Findings, ...] = ()
    caption: str | None = None  # the caption as composed (reconciled), None when off
    confidence: float | None = None  # the caption's calibrated confidence, where there is one
    caption_said: str | None = None  # stated | hedged | left out, None without a caption
    replaced: tuple[tuple[str, str], ...] = ()  # (caption word, object name) reconciled
    read: str | None = None  # what the text channel read, as spoken ("Sign: EXIT")
    places: tuple[tuple[str, str], ...] = ()  # (thing's name, where), the surest first
    words: tuple[tuple[str, str], ...] = ()  # (word read, where)

    @property
    def hedged(self) -> bool:
        return self.caption_said == "hedged"

    def report(self) -> dict:
        """Every channel's keys for caption's JSON and the log."""
        out: dict = {}
        for f in self.findings:
            out.update(f.report)
        return out


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


def listed(phrases: list[str], joint: str = "and") -> str:
    """'a', 'a and b', 'a, b and c'."""
    return phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} {joint} {phrases[-1]}"


def _facts(
    findings: tuple[Findings, ...], kinds: dict
) -> tuple[list[Thing], list[Thing], bool, set[str]]:
    """(facts, guesses, whether a channel that covers COCO's classes ran, what it glimpsed).
    A fact that needs confirming (the ImageNet head's COCO thing) is dropped where another
    channel's fact has its class (that one is said); it stays a fact where the covering
    channel glimpsed it, and is a guess where that channel did not see it at all or stated
    another thing of its group. A head's thing of the same kind as a detected thing of
    another name ("a wolf" beside a detected dog) is a guess too."""
    covering = any(f.covers for f in findings)
    firm = [t for f in findings for t in f.facts if not t.confirm]
    seen = {t.cls for t in firm if t.cls}
    glimpsed = {c for f in findings for c in f.glimpsed}
    words = kinds.get("words", {})
    kinds_seen = {words.get(t.name) for f in findings if f.covers for t in f.facts} - {None}
    facts: list[Thing] = []
    guesses = [t for f in findings for t in f.guesses]
    for t in firm:
        clash = t.kind is not None and not t.cls and t.kind in kinds_seen
        (guesses if clash else facts).append(t)
    for t in (t for f in findings for t in f.facts if t.confirm):
        if t.cls in seen:
            continue  # the detector's count and place are said
        unseen = (
            covering
            and t.cls
            and (t.cls not in glimpsed or any(coco.same_group(t.cls, c) for c in seen))
        )
        (guesses if unseen else facts).append(t)
    first = {id(t) for f in findings if f.covers for t in f.facts}  # boxes: placed and counted
    unique: dict[str, Thing] = {}
    for t in sorted(facts, key=lambda t: (id(t) not in first, -t.rank)):
        unique.setdefault(t.cls or t.name, t)
    guessed: dict[str, Thing] = {}
    stated = {t.cls for t in unique.values() if t.cls}
    for t in sorted(guesses, key=lambda t: -t.score):
        if (t.cls or t.name) in unique or (
            t.cls
            and coco.group(t.cls) == "animal"
            and any(coco.same_group(t.cls, c) for c in stated)
        ):
            continue  # a dog guessed where a cat is stated: a second opinion on one animal
        guessed.setdefault(t.cls or t.name, t)
    return list(unique.values()), list(guessed.values()), covering, glimpsed


def _verdict(
    s: Sentence,
    facts: list[Thing],
    guesses: list[Thing],
    covering: bool,
    glimpses: set[str] | frozenset[str] = frozenset(),
    floor: float = 0.0,
) -> str:
    """stated | hedged | left out, for the caption against what the channels saw."""
    unsure = s.threshold is not None and s.confidence is not None and s.confidence < s.threshold
    if not covering:
        return "hedged" if unsure else "stated"
    if unsure and s.confidence is not None and s.confidence < floor:
        return "left out"
    seen = {t.cls for t in facts if t.cls}
    glimpsed = {t.cls for t in guesses if t.cls} | glimpses
    named = coco.classes_in(s.text)
    unseen = [c for c in named if c not in seen]
    if any(coco.same_group(c, f) for c in unseen for f in seen):
        return "left out"  # it names another thing of a kind that was seen: a contradiction
    if not unseen:
        return "hedged" if unsure else "stated"
    return "hedged" if all(c in glimpsed for c in unseen) else "left out"


def compose(
    findings: tuple[Findings, ...] | list[Findings],
    kinds: dict | None = None,
    cfg: ComposeConfig = ComposeConfig(),
) -> Description:
    """One utterance from the findings of the channels that ran, in the registry's order."""
    findings = tuple(findings)
    facts, guesses, covering, glimpsed = _facts(findings, kinds or {})
    s = next((f.sentence for f in findings if f.sentence is not None), None)
    caption = s.text if s else None
    replaced: tuple[tuple[str, str], ...] = ()
    verdict: str | None = None  # set only where there is a caption
    # the ImageNet head's sure thing, still a fact (or said by the detector, which saw it too)
    sure = next((t for f in findings for t in f.facts if t.kind), None)
    if sure is not None and sure not in facts and sure.cls not in {t.cls for t in facts if t.cls}:
        sure = None  # a guess now: it corrects no caption
    if caption and sure is not None and kinds:
        text, swaps = reconcile(caption, sure.name, kinds)
        if swaps and sure.score >= REPLACE:
            caption, replaced = text, swaps
        elif swaps and sure in facts:  # the two disagree, and the head is not sure enough to
            facts.remove(sure)  # correct the caption: its name is only a guess
            guesses.insert(0, sure)
    if caption and s is not None:
        verdict = _verdict(
            replace(s, text=caption), facts, guesses, covering, glimpsed, cfg.hedge_floor
        )
    parts: list[str] = []
    if verdict == "stated" and caption:
        parts.append(caption)
        named = coco.classes_in(caption)
        rest = [
            t for t in facts if not (t.cls and t.cls in named) and not mentions(caption, t.name)
        ]
        if rest[: cfg.facts_beside_caption]:
            parts.append("I see " + listed([t.phrase for t in rest[: cfg.facts_beside_caption]]))
    elif facts:
        parts.append("I see " + listed([t.phrase for t in facts[: cfg.facts]]))
    parts += [f.said for f in findings if f.said]
    maybes: list[str] = []
    if verdict == "hedged" and caption:
        maybes.append("maybe " + caption)
    names = [
        t.phrase if cfg.place_guesses else coco.with_article(t.name)
        for t in guesses[: cfg.guessed_names]
    ]
    if (
        names
        and (not s or not covering or verdict != "hedged")
        and (cfg.guess_beside_facts or not facts)
    ):
        maybes.append("maybe " + listed(names, "or"))
    parts += maybes[: cfg.guesses]
    read = " ".join(f.read for f in findings if f.read)
    said = ". ".join(p for p in parts if p)
    said = (f"{said}. {read}" if said else read) if read else said
    key = tuple((f.channel, f.key) for f in findings if f.key != ())
    # where things are, for find mode: the detector's boxes first; a COCO thing another channel
    # places is left out where the detector ran and saw nothing of it
    known = {t.cls for t in facts if t.cls} | glimpsed | {None}  # None: no COCO thing
    places = tuple(
        (name, where)
        for f in sorted(findings, key=lambda f: not f.covers)
        for name, where in f.places
        if f.covers or not covering or coco.canonical(name) in known
    )
    words = tuple(w for f in findings for w in f.words)
    return Description(
        said or NOTHING,
        key,
        findings,
        caption,
        s.confidence if s else None,
        verdict,
        replaced,
        read or None,
        places,
        words,
    )
