"""How truthful the spoken descriptions are on everyday photos: the objects they name against
the objects in the photo (CHAIR's word list), plainly said apart from hedged, and the caption's
BLEU-4 and CIDEr against the human captions.

    python -m export truth --data ../shared/datasets/coco-everyday/dev.jsonl
    python -m export truth --data ../shared/datasets/coco-everyday/dev.jsonl --limit 50 \
        --channel caption,objects --out out/truth-no-text.json
    python -m export truth --data ../shared/datasets/coco-everyday/dev.jsonl \
        --from-jsonl out/truth.descriptions.jsonl                           # re-score a run

The descriptions come from the device CLI, run as a user runs it, once over all photos:
`python -m runtime caption PHOTO... --json [--model ...]`. Its lines are saved beside the report
(`out/truth.json` -> `out/truth.descriptions.jsonl`), and `--from-jsonl` scores such a file.

Sentences. A description is split on ". ". A sentence that starts with "maybe" is hedged; the
others are stated. From the first sentence that starts with "Sign:" or "Text:" to the end, the
words are what the text channel read (read text runs to the end, ". more text" included): not
claims, so no object is taken from them.

Object words -> COCO classes, after CHAIR (Rohrbach et al. 2018, LisaAnne/Hallucination
utils/chair.py), from its word list (`coco_synonyms.txt` beside `--data`, read at run time):
- lower case; words are runs of letters and digits, so punctuation splits words: "man's" is
  "man" "s", and "horse-drawn vehicle" (the objects channel's name for ImageNet's horse cart)
  names a horse, where CHAIR's nltk tokenizer keeps "horse-drawn" whole and names none;
- each word is made singular only into a word of the list: irregular plurals (men -> man,
  women, policemen, children -> child, mice, geese), -ies -> -y, -ves -> -fe/-f (knives),
  -es after s/x/z/ch/sh/o (glasses, benches, buses), else -s (dogs); "people", "skis",
  "scissors" and the like stay, being in the list;
- the longest phrase of the list matches first ("stove top oven", "hot dog", "teddy bear",
  "cell phone", "dining table", "wine glass", "motor bike", "traffic light", "stop sign"), so
  a hot dog is no dog and a teddy bear no bear; then single words;
- CHAIR's own rules: "baby"/"adult" before an animal (bird, cat, dog, horse, sheep, cow,
  elephant, bear, zebra, giraffe, animal, cub) names the animal, not a person; "passenger jet"
  and "passenger train" name no passenger; "bow tie" and "bow" are a tie, "toilet seat" a
  toilet, and in a description naming a toilet "seat" is no chair; "home plate" and
  "train track" name nothing;
- the list's own mappings stand, quirks included: "table" and "desk" are a dining table,
  "seat" and "stool" a chair, "ball" a sports ball, "container" a bowl, "orange" is the fruit
  even as a colour, "player" and "rider" a person;
- where CHAIR's reading of the list is broken we do not follow it: names are stripped of the
  spaces around them (its " motor bike" and " cheesecake" never matched) and lower-cased
  ("iPhone").
A class named several times in a description counts once for it (stated, hedged, named);
CHAIR-i alone counts every mention, as CHAIR does.

Metrics, over the photos (G: a photo's `objects`; S: classes stated, H: hedged, N = S | H):
  stated precision  sum |S & G| / sum |S|        stated coverage  share of photos with S & G
  precision (named) sum |N & G| / sum |N|        recall           sum |N & G| / sum |G|
  recall per photo  mean of |N & G| / |G|        stated recall    sum |S & G| / sum |G|
  CHAIR-i           wrong mentions / mentions    CHAIR-s          share of photos with N - G
  hedged sentences and words per description (words with and without the read text)
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from runtime import ROOT
from runtime.errors import InputError, SceneSpeakError
from runtime.options import check

SYNONYMS = "coco_synonyms.txt"  # CHAIR's word list, looked for beside --data
READ_HEADS = ("Sign:", "Text:")  # how the text channel's reading starts (runtime/channels/text.py)
_WORD = re.compile(r"[a-z0-9]+")
_MAYBE = re.compile(r"maybe\b", re.IGNORECASE)

# CHAIR's hard-coded phrases: "baby bird" is a bird, not a person; "passenger jet" a jet.
ANIMALS = (
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "animal",
    "cub",
)
VEHICLES = ("jet", "train")
PHRASES = {"bow tie": "tie", "toilet seat": "toilet", "home plate": None, "train track": None}
IRREGULAR = {"mice": "mouse", "geese": "goose", "teeth": "tooth", "feet": "foot"}


@dataclass(frozen=True)
class TruthConfig:
    data: str  # JSONL of photos with "image", "captions" and "objects" (COCO classes present)
    model: str | None = None  # bundle folder for the runtime (the runtime's default when not given)
    precision: str | None = None  # for the runtime (the runtime's default when not given)
    channel: str | None = None  # for the runtime: auto, all, both, or a comma list
    verbosity: str | None = None  # for the runtime, passed only when given
    runtime_args: str = ""  # more options for `python -m runtime caption`, as one string
    # ("--beam 3"; one bare flag as --runtime-args=--flag)
    limit: int = 0  # the first N photos only (0: all)
    synonyms: str | None = None  # CHAIR's word list (default: coco_synonyms.txt beside --data)
    from_jsonl: str | None = None  # score these saved `caption --json` lines; runs nothing
    out: str = "out/truth.json"  # the report; the runtime's lines go beside it, .descriptions.jsonl
    plot: str | None = None  # a PNG bar chart of the precisions, coverage and recall
    worst: int = 10  # how many photos with the most wrong stated objects the report keeps

    def __post_init__(self):
        check(self, "limit", self.limit >= 0, "use 0 (all) or more")
        check(self, "worst", self.worst >= 0, "use 0 or more")


# ---- words -> classes ---------------------------------------------------------------------


class ObjectWords:
    """CHAIR's word list: `classes(text)` -> [(word, COCO class)], one per mention, in order."""

    def __init__(self, text: str):
        self.phrases: dict[tuple[str, ...], str | None] = {}  # words -> class (None: no object)
        for line in text.splitlines():
            if line.lstrip().startswith("#"):
                continue
            names = [" ".join(n.lower().split()) for n in line.split(",")]
            names = [n for n in names if n]
            for n in names:
                self.phrases.setdefault(tuple(n.split()), names[0])
        if not self.phrases:
            raise InputError("the synonyms list names no class")
        extra = {f"{q} {a}": a for a in ANIMALS for q in ("baby", "adult")}
        extra |= {f"passenger {v}": v for v in VEHICLES} | PHRASES
        for phrase, word in extra.items():
            self.phrases[tuple(phrase.split())] = self.phrases.get((word,)) if word else None
        self.known = {w for p in self.phrases for w in p}
        self.longest = max(len(p) for p in self.phrases)

    @property
    def classes_listed(self) -> set[str]:
        return {c for c in self.phrases.values() if c}

    def singular(self, word: str) -> str:
        """The singular of word when it is a word of the list, else word."""
        if word in self.known:
            return word
        tries = [IRREGULAR.get(word, "")]
        if word.endswith("children"):
            tries.append(word[:-3])
        if word.endswith("men"):  # men, women, policemen
            tries.append(word[:-3] + "man")
        if word.endswith("ies"):
            tries.append(word[:-3] + "y")
        if word.endswith("ves"):
            tries += [word[:-3] + "fe", word[:-3] + "f"]
        if word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh", "o")):
            tries.append(word[:-2])
        if word.endswith("s") and not word.endswith("ss"):
            tries.append(word[:-1])
        return next((t for t in tries if t in self.known), word)

    def classes(self, text: str) -> list[tuple[str, str]]:
        words = [self.singular(w) for w in _WORD.findall(text.lower())]
        out, i = [], 0
        while i < len(words):
            for n in range(min(self.longest, len(words) - i), 0, -1):
                phrase = tuple(words[i : i + n])
                if phrase in self.phrases:
                    if self.phrases[phrase]:
                        out.append((" ".join(phrase), self.phrases[phrase]))
                    i += n
                    break
            else:
                i += 1
        return out


def read_synonyms(path: Path) -> ObjectWords:
    if not path.is_file():
        raise InputError(f"{path}: the synonyms list does not exist (give it with --synonyms)")
    return ObjectWords(path.read_text())


# ---- descriptions -> what they claim ------------------------------------------------------


@dataclass(frozen=True)
class Said:
    """One description, taken apart."""

    stated: list[str]  # sentences said plainly (claims)
    hedged: list[str]  # sentences starting with "maybe" (claims, as guesses)
    read: str  # what the text channel read, from "Sign:"/"Text:" to the end ("" when none)
    words: int  # words of the whole description, read text included


def split_description(text: str) -> Said:
    sentences = [s.strip() for s in text.strip().removesuffix(".").split(". ")]
    cut = next((i for i, s in enumerate(sentences) if s.startswith(READ_HEADS)), len(sentences))
    claims = [s for s in sentences[:cut] if s]
    hedged = [bool(_MAYBE.match(s)) for s in claims]
    return Said(
        [s for s, h in zip(claims, hedged) if not h],
        [s for s, h in zip(claims, hedged) if h],
        ". ".join(sentences[cut:]),
        len(text.split()),
    )


@dataclass
class Named:
    """The COCO classes a description names."""

    stated: set[str]
    hedged: set[str]
    mentions: list[str]  # every mention's class, stated or hedged, as CHAIR-i counts them
    hedges: int  # "maybe" sentences
    words: int
    claim_words: int  # words without the read text

    @property
    def named(self) -> set[str]:
        return self.stated | self.hedged


def named(description: str, words: ObjectWords) -> Named:
    said = split_description(description)
    stated = [m for s in said.stated for m in words.classes(s)]
    hedged = [m for s in said.hedged for m in words.classes(s)]
    if any(c == "toilet" for _, c in stated + hedged):  # "the seat of the toilet" is no chair
        stated, hedged = ([m for m in ms if m[0] != "seat"] for ms in (stated, hedged))
    claim_words = sum(len(s.split()) for s in said.stated + said.hedged)
    return Named(
        {c for _, c in stated},
        {c for _, c in hedged},
        [c for _, c in stated + hedged],
        len(said.hedged),
        said.words,
        claim_words,
    )


# ---- scoring ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Photo:
    image: str  # as the data file names it, relative to its folder
    captions: tuple[str, ...]
    objects: frozenset[str]


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def score(
    photos: list[Photo], lines: list[dict], words: ObjectWords, worst: int = 10, bleu: bool = True
) -> dict:
    """Every metric of the descriptions (`lines[i]` describes `photos[i]`): "metrics", the
    "counts" behind them, "recall_by_class" and the "worst" stated hallucinations."""
    said = [named(line.get("description") or "", words) for line in lines]
    truth = [p.objects for p in photos]
    n = len(photos)
    stated = sum(len(s.stated) for s in said)
    stated_true = sum(len(s.stated & g) for s, g in zip(said, truth))
    all_named = sum(len(s.named) for s in said)
    named_true = sum(len(s.named & g) for s, g in zip(said, truth))
    present = sum(len(g) for g in truth)
    mentions = sum(len(s.mentions) for s in said)
    wrong_mentions = sum(c not in g for s, g in zip(said, truth) for c in s.mentions)
    counts = {
        "photos": n,
        "stated": stated,
        "stated_true": stated_true,
        "named": all_named,
        "named_true": named_true,
        "present": present,
        "mentions": mentions,
        "wrong_mentions": wrong_mentions,
        "photos_with_true_stated": sum(bool(s.stated & g) for s, g in zip(said, truth)),
        "photos_with_wrong_named": sum(bool(s.named - g) for s, g in zip(said, truth)),
        "hedged_sentences": sum(s.hedges for s in said),
    }
    per_photo = [len(s.named & g) / len(g) for s, g in zip(said, truth) if g]
    metrics = {
        "stated_precision": _ratio(stated_true, stated),
        "stated_coverage": _ratio(counts["photos_with_true_stated"], n),
        "named_precision": _ratio(named_true, all_named),
        "recall": _ratio(named_true, present),
        "recall_per_photo": _ratio(sum(per_photo), len(per_photo)),
        "stated_recall": _ratio(stated_true, present),
        "chair_i": _ratio(wrong_mentions, mentions),
        "chair_s": _ratio(counts["photos_with_wrong_named"], n),
        "hedged_per_description": _ratio(counts["hedged_sentences"], n),
        "words_per_description": _ratio(sum(s.words for s in said), n),
        "claim_words_per_description": _ratio(sum(s.claim_words for s in said), n),
    }
    if bleu:
        metrics |= caption_scores([line.get("caption") or "" for line in lines], photos)
    by_class: dict[str, list[int]] = {}
    for s, g in zip(said, truth):
        for c in g:
            by_class.setdefault(c, [0, 0, 0])
            by_class[c][0] += 1
            by_class[c][1] += c in s.named
            by_class[c][2] += c in s.stated
    recall_by_class = {
        c: {"present": p, "named": k, "stated": t}
        for c, (p, k, t) in sorted(by_class.items(), key=lambda kv: -kv[1][0])
    }
    bad = [(i, sorted(s.stated - g)) for i, (s, g) in enumerate(zip(said, truth)) if s.stated - g]
    bad.sort(key=lambda b: (-len(b[1]), -len(b[1]) / len(said[b[0]].stated), b[0]))
    examples = [
        {
            "image": Path(photos[i].image).name,
            "description": lines[i].get("description"),
            "wrong": wrong,
            "stated": sorted(said[i].stated),
            "objects": sorted(truth[i]),
        }
        for i, wrong in bad[:worst]
    ]
    return {
        "metrics": metrics,
        "counts": counts,
        "recall_by_class": recall_by_class,
        "worst": examples,
    }


def caption_scores(captions: list[str], photos: list[Photo]) -> dict[str, float]:
    """BLEU-1..4, ROUGE-L and CIDEr-D of the captions against each photo's human captions
    (pycocoevalcap on lower-cased words, as `export evaluate`)."""
    from runtime.model.metrics import caption_scores as scores

    out = scores(captions, [list(p.captions) for p in photos], meteor=False)
    if out is None:
        raise InputError(
            "caption scores need pycocoevalcap "
            "(pip install -c requirements/constraints.txt -e '.[train]')"
        )
    return out


# ---- the data and the runtime -------------------------------------------------------------


def read_photos(path: Path) -> list[Photo]:
    if not path.is_file():
        raise InputError(f"{path}: the data file does not exist")
    photos = []
    for k, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            photos.append(Photo(row["image"], tuple(row["captions"]), frozenset(row["objects"])))
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(
                f"{path}:{k}: not a photo line with image, captions and objects "
                f"({type(e).__name__}: {e})"
            ) from None
    if not photos:
        raise InputError(f"{path}: no photos")
    return photos


def runtime_command(cfg: TruthConfig, images: list[str]) -> list[str]:
    """`python -m runtime caption IMAGE... --json` with the options given."""
    argv = [sys.executable, "-m", "runtime", "caption", *images, "--json"]
    for flag, value in (
        ("--model", cfg.model),
        ("--precision", cfg.precision),
        ("--channel", cfg.channel),
        ("--verbosity", cfg.verbosity),
    ):
        if value is not None:
            argv += [flag, value]
    return argv + shlex.split(cfg.runtime_args)


def run_runtime(argv: list[str], total: int) -> tuple[list[str], str]:
    """The runtime's stdout lines as they come (a progress bar over them) and its stderr; one
    `SceneSpeakError` line when it fails, with the lines it gave before in `.lines`."""
    from tqdm import tqdm

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    lines: list[str] = []
    # stderr goes to a file: a pipe read only at the end could fill and stall the runtime
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        bar = tqdm(total=total, desc="describing", unit="photo")
        try:
            for line in proc.stdout:
                if line.strip():
                    lines.append(line.rstrip("\n"))
                    bar.update()
        except BaseException:  # Ctrl-C: the runtime goes too
            proc.kill()
            proc.wait()
            bar.close()
            raise
        rc = proc.wait()
        bar.leave = rc == 0  # a failure leaves its one error line, no bar above it
        bar.close()
        err.seek(0)
        stderr = err.read()
    if rc != 0:
        last = next((e for e in reversed(stderr.splitlines()) if e.strip()), "no message")
        e = SceneSpeakError(
            f"python -m runtime caption failed (exit {rc}): {last.strip().removeprefix('error: ')}"
        )
        e.lines = lines
        raise e
    return lines, stderr


def _match(photos: list[Photo], data_dir: Path, lines: list[dict], source: str):
    """(photo, line) pairs in the data file's order, by the line's image path (or file name)."""
    by_key = {}
    for p in photos:
        by_key[str((data_dir / p.image).resolve())] = p
        by_key.setdefault(Path(p.image).name, p)
    got: dict[str, dict] = {}
    for line in lines:
        img = str(line.get("image", ""))
        p = (
            by_key.get(str(Path(img).resolve()))
            or by_key.get(str((data_dir / img).resolve()))
            or by_key.get(Path(img).name)
        )
        if p is not None:
            got.setdefault(p.image, line)
    pairs = [(p, got[p.image]) for p in photos if p.image in got]
    if not pairs:
        raise InputError(f"{source}: no line describes a photo of the data file")
    return pairs


def _parse(lines: list[str], source: str) -> list[dict]:
    out = []
    for k, line in enumerate(lines, 1):
        try:
            out.append(json.loads(line))
        except ValueError:
            raise InputError(f"{source}:{k}: not a JSON line") from None
    return out


def truth(cfg: TruthConfig) -> dict:
    """Describe (or read) every photo, score, and write the report; the report."""
    data = Path(cfg.data)
    if not data.is_file():
        raise InputError(f"{data}: the data file does not exist")
    words = read_synonyms(Path(cfg.synonyms) if cfg.synonyms else data.parent / SYNONYMS)
    photos = read_photos(data)
    photos = photos[: cfg.limit] if cfg.limit else photos
    out = Path(cfg.out)
    raw_path = out.with_suffix(".descriptions.jsonl")
    command = None
    if cfg.from_jsonl:
        src = Path(cfg.from_jsonl)
        if not src.is_file():
            raise InputError(f"{src}: the descriptions file does not exist")
        raw = src.read_text().splitlines()
        raw = [line for line in raw if line.strip()]
    else:
        argv = runtime_command(cfg, [str((data.parent / p.image).resolve()) for p in photos])
        command = " ".join(
            argv[:2] + ["runtime", "caption", f"<{len(photos)} photos>"] + argv[4 + len(photos) :]
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            raw, stderr = run_runtime(argv, len(photos))
        except SceneSpeakError as e:
            got = getattr(e, "lines", [])
            raw_path.write_text("".join(line + "\n" for line in got))
            if got:
                raise SceneSpeakError(
                    f"{e} (its {len(got)} lines are in {raw_path}; --from-jsonl scores them)"
                ) from None
            raise
        raw_path.write_text("".join(line + "\n" for line in raw))
        if stderr.strip():
            notes = stderr.strip().splitlines()
            print(
                "\n".join(notes[:5]) + (f"\n... {len(notes) - 5} more" if len(notes) > 5 else ""),
                file=sys.stderr,
            )
    pairs = _match(
        photos,
        data.parent,
        _parse(raw, cfg.from_jsonl or "the runtime"),
        cfg.from_jsonl or "the runtime's output",
    )
    report = score([p for p, _ in pairs], [line for _, line in pairs], words, cfg.worst)
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("out", "plot", "worst")}
    settings["command"] = command
    report = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "settings": settings,
        "photos": len(pairs),
        "photos_in_data": len(photos),
        **report,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    report["files"] = [str(out)] + ([] if cfg.from_jsonl else [str(raw_path)])
    if cfg.plot:
        plot(report, Path(cfg.plot))
        report["files"].append(cfg.plot)
    return report


# ---- showing it ---------------------------------------------------------------------------


def table(report: dict) -> str:
    m, c = report["metrics"], report["counts"]
    f = lambda v, d=3: "-" if v is None else f"{v:.{d}f}"
    rows = [
        (
            "stated precision",
            f(m["stated_precision"]),
            f"{c['stated_true']} of {c['stated']} objects stated without a hedge are in the photo",
        ),
        (
            "stated coverage",
            f(m["stated_coverage"]),
            f"{c['photos_with_true_stated']} of {c['photos']} photos get a true object stated",
        ),
        (
            "named precision",
            f(m["named_precision"]),
            f"{c['named_true']} of {c['named']} objects named (stated or hedged) are in the photo",
        ),
        (
            "recall",
            f(m["recall"]),
            f"{c['named_true']} of {c['present']} classes present named; "
            f"per photo {f(m['recall_per_photo'])}, stated {f(m['stated_recall'])}",
        ),
        (
            "CHAIR-i / CHAIR-s",
            f"{f(m['chair_i'])} / {f(m['chair_s'])}",
            f"{c['wrong_mentions']} of {c['mentions']} mentions wrong",
        ),
        ("hedged sentences", f(m["hedged_per_description"], 2), "per description"),
        (
            "words",
            f(m["words_per_description"], 1),
            f"per description ({f(m['claim_words_per_description'], 1)} without read text)",
        ),
    ]
    if "bleu4" in m:
        rows.append(
            (
                "caption BLEU-4 / CIDEr",
                f"{f(m['bleu4'])} / {f(m['cider'])}",
                "the caption against the human captions",
            )
        )
    width = max(len(r[0]) for r in rows)
    vw = max(len(r[1]) for r in rows)
    head = f"truth of {report['photos']} descriptions ({report['date']})"
    return "\n".join([head] + [f"  {a:<{width}}  {b:>{vw}}  {d}" for a, b, d in rows])


def plot(report: dict, path: Path) -> None:
    """A bar chart of the precisions, coverage and recall; skipped with a warning without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("warning: no matplotlib, no plot", file=sys.stderr)
        return
    m = report["metrics"]
    names = ("stated_precision", "stated_coverage", "named_precision", "recall")
    values = [m[k] or 0.0 for k in names]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar([k.replace("_", "\n") for k in names], values, color="#4a7ab0")
    for i, v in enumerate(values):
        ax.text(i, v + 0.02, f"{v:.2f}", ha="center")
    ax.set_ylim(0, 1.1)
    ax.set_title(f"truth of {report['photos']} descriptions")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
