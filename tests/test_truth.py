"""export/truth.py: descriptions taken apart into stated, hedged and read sentences, object words
mapped to COCO classes by a small hand-written CHAIR list, the metrics on a hand-computed
example, and the CLI's one-line errors. Needs nothing from ../shared."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import ROOT, needs_torch, run_cli

from export.truth import (
    ObjectWords,
    Photo,
    TruthConfig,
    named,
    run_runtime,
    runtime_command,
    score,
    split_description,
    truth,
)
from runtime.errors import SceneSpeakError

pytestmark = pytest.mark.unit

SYNONYMS = """\
# a few classes of CHAIR's list, its format: the class, then its synonyms
person, man, woman, child, children, people, baby
dog, puppy
bear
teddy bear, teddybear
hot dog
dining table, table
wine glass
bench
knife
toilet
chair, seat
bird
skis, ski
cell phone, phone,  mobile phone
"""


@pytest.fixture(scope="module")
def words() -> ObjectWords:
    return ObjectWords(SYNONYMS)


def classes(words: ObjectWords, text: str) -> list[str]:
    return [c for _, c in words.classes(text)]


def test_maybe_sentences_are_hedged_and_the_rest_stated():
    said = split_description(
        "I see a dog ahead. maybe a man is sitting. Maybe a cat. "
        "a woman walks. maybelline is no hedge"
    )
    assert said.stated == ["I see a dog ahead", "a woman walks", "maybelline is no hedge"]
    assert said.hedged == ["maybe a man is sitting", "Maybe a cat"]
    assert said.read == ""


def test_read_text_runs_to_the_end_and_names_no_object(words):
    said = split_description("maybe a man. Sign: HOT DOG. a dog is here. more text")
    assert said.hedged == ["maybe a man"] and said.stated == []
    assert said.read == "Sign: HOT DOG. a dog is here. more text"
    n = named("a woman at a table. Text: SEAT 12. BENCH PRESS. more text", words)
    assert n.stated == {"person", "dining table"} and n.hedged == set()
    assert n.words == 12 and n.claim_words == 5
    # the text alone (nothing else found) is all read text
    assert named("Sign: DOG PARK", words).named == set()


def test_two_word_synonyms_match_before_single_words(words):
    assert classes(words, "a hot dog and a teddy bear") == ["hot dog", "teddy bear"]
    assert classes(words, "a dog chases a bear") == ["dog", "bear"]
    assert classes(words, "a man on a mobile phone at the dining table") == [
        "person",
        "cell phone",
        "dining table",
    ]
    assert classes(words, "two wine glasses") == ["wine glass"]  # not a glass, not nothing


def test_plurals_are_made_singular_into_the_list(words):
    assert classes(words, "dogs, benches, knives and hot dogs") == [
        "dog",
        "bench",
        "knife",
        "hot dog",
    ]
    assert classes(words, "men, women, children and people") == ["person"] * 4
    assert classes(words, "skis and puppies") == ["skis", "dog"]  # "skis" is in the list
    assert classes(words, "glasses on the tables") == ["dining table"]  # glasses alone: none


def test_chair_rules_for_babies_seats_and_hyphens(words):
    assert classes(words, "a baby bird") == ["bird"]  # not a person
    assert classes(words, "a baby") == ["person"]
    assert classes(words, "a toilet seat") == ["toilet"]
    assert named("the seat of a toilet", words).stated == {"toilet"}  # no chair
    assert named("a seat by the door", words).stated == {"chair"}
    assert classes(words, "a hot-dog stand and a man's dog") == ["hot dog", "person", "dog"]


def test_the_list_is_read_as_written_comments_spaces_and_case(words):
    assert ObjectWords("# only a comment\ncell phone, iPhone").phrases[("iphone",)] == "cell phone"
    assert words.phrases[("mobile", "phone")] == "cell phone"  # the double space is dropped
    assert "#" not in " ".join(words.classes_listed)


PHOTOS = [
    Photo("a/1.jpg", ("a man and a dog",), frozenset({"person", "dog"})),
    Photo("a/2.jpg", ("a child",), frozenset({"person", "teddy bear", "cell phone"})),
    Photo("a/3.jpg", ("a table",), frozenset({"dining table", "wine glass", "knife"})),
    Photo("a/4.jpg", ("a bird",), frozenset({"bird"})),
]
DESCRIPTIONS = [
    "I see a dog ahead. maybe a man and a cat are sitting on a bench",
    "a child holds a teddy bear. maybe a phone. Sign: HOT DOG STAND",
    "two men at a table with knives and a bear and a man",
    "maybe a baby bird on a toilet seat",
]


def test_metrics_on_a_hand_computed_example(words):
    lines = [
        {"image": p.image, "caption": d, "description": d} for p, d in zip(PHOTOS, DESCRIPTIONS)
    ]
    r = score(PHOTOS, lines, words, bleu=False)
    m, c = r["metrics"], r["counts"]
    # stated: {dog} | {person, teddy bear} | {person, dining table, knife, bear} | {}
    assert (c["stated"], c["stated_true"]) == (7, 5)
    assert m["stated_precision"] == pytest.approx(5 / 7)
    assert m["stated_coverage"] == pytest.approx(3 / 4)  # the bird is only hedged
    # named adds the hedged: person, bench | cell phone | - | bird, toilet
    assert (c["named"], c["named_true"], c["present"]) == (12, 8, 9)
    assert m["named_precision"] == pytest.approx(8 / 12)
    assert m["recall"] == pytest.approx(8 / 9)
    assert m["recall_per_photo"] == pytest.approx((1 + 1 + 2 / 3 + 1) / 4)
    assert m["stated_recall"] == pytest.approx(5 / 9)
    # CHAIR-i counts every mention: 3 + 3 + 5 + 2, wrong: bench, men, bear, man, toilet
    assert (c["mentions"], c["wrong_mentions"]) == (13, 5)
    assert m["chair_s"] == pytest.approx(3 / 4)
    assert m["hedged_per_description"] == pytest.approx(3 / 4)
    total = sum(len(d.split()) for d in DESCRIPTIONS)
    assert m["words_per_description"] == pytest.approx(total / 4)
    # without "Sign: HOT DOG STAND"
    assert m["claim_words_per_description"] == pytest.approx((total - 4) / 4)
    assert [(w["image"], w["wrong"]) for w in r["worst"]] == [("3.jpg", ["bear", "person"])]
    assert r["recall_by_class"]["person"] == {"present": 2, "named": 2, "stated": 1}


def test_a_saved_file_is_rescored_and_the_report_written(tmp_path):
    pytest.importorskip("pycocoevalcap")
    data = tmp_path / "dev.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {"image": p.image, "captions": [p.captions[0]] * 5, "objects": sorted(p.objects)}
            )
            + "\n"
            for p in PHOTOS
        )
    )
    (tmp_path / "coco_synonyms.txt").write_text(SYNONYMS)
    saved = tmp_path / "saved.jsonl"  # the runtime's lines name photos by its own paths
    saved.write_text(
        "".join(
            json.dumps(
                {"image": f"/elsewhere/{p.image}", "caption": p.captions[0], "description": d}
            )
            + "\n"
            for p, d in reversed(list(zip(PHOTOS, DESCRIPTIONS)))
        )
    )
    out = tmp_path / "r" / "truth.json"
    report = truth(TruthConfig(data=str(data), from_jsonl=str(saved), out=str(out), limit=3))
    assert report["photos"] == 3 and report["metrics"]["stated_precision"] == pytest.approx(5 / 7)
    assert report["metrics"]["bleu4"] == pytest.approx(1.0)  # the captions are the references
    written = json.loads(out.read_text())
    assert written["settings"]["limit"] == 3 and written["date"] and written["photos"] == 3
    assert not out.with_suffix(".descriptions.jsonl").exists()  # the saved file is the record


def test_the_runtime_is_asked_once_with_only_the_options_given():
    argv = runtime_command(
        TruthConfig(data="d.jsonl", channel="caption", runtime_args="--beam 3"), ["a.jpg", "b.jpg"]
    )
    assert argv[1:] == [
        "-m",
        "runtime",
        "caption",
        "a.jpg",
        "b.jpg",
        "--json",
        "--channel",
        "caption",
        "--beam",
        "3",
    ]
    argv = runtime_command(TruthConfig(data="d.jsonl", verbosity="full", model="m"), ["a.jpg"])
    assert argv[-4:] == ["--model", "m", "--verbosity", "full"]


@pytest.mark.system
def test_a_failing_runtime_is_one_line_with_the_lines_it_gave():
    child = (
        'import sys; print(\'{"image": "a.jpg"}\', flush=True); '
        "sys.stderr.write('warning: slow\\nerror: b.jpg: not an image\\n'); sys.exit(2)"
    )
    with pytest.raises(SceneSpeakError) as e:
        run_runtime([sys.executable, "-c", child], 2)
    assert str(e.value) == "python -m runtime caption failed (exit 2): b.jpg: not an image"
    assert e.value.lines == ['{"image": "a.jpg"}']


@pytest.mark.system
@needs_torch
def test_a_missing_data_file_is_one_line_and_exit_2():
    r = run_cli("export", "truth", "--data", "/nonexistent/dev.jsonl", timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: /nonexistent/dev.jsonl: the data file does not exist"
    ]


@pytest.mark.system
@needs_torch
def test_a_missing_synonyms_list_is_one_line_and_exit_2(tmp_path):
    data = tmp_path / "dev.jsonl"
    data.write_text(json.dumps({"image": "1.jpg", "captions": ["x"], "objects": []}) + "\n")
    r = run_cli(
        "export", "truth", "--data", str(data), "--out", str(tmp_path / "t.json"), timeout=120
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: ") and "coco_synonyms.txt" in line


@pytest.mark.system
@needs_torch
def test_the_runtime_describes_real_photos_in_one_run(tmp_path):
    photos = sorted((ROOT / "assets" / "photos").glob("*.jpg"))[:2]
    data = tmp_path / "dev.jsonl"
    data.write_text(
        "".join(
            json.dumps({"image": str(p), "captions": ["a photo"], "objects": ["cat"]}) + "\n"
            for p in photos
        )
    )
    (tmp_path / "coco_synonyms.txt").write_text(SYNONYMS + "cat, kitten\n")
    out = tmp_path / "truth.json"
    r = run_cli(
        "export",
        "truth",
        "--data",
        str(data),
        "--out",
        str(out),
        "--channel",
        "caption,objects",
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "stated precision" in r.stdout and "caption BLEU-4 / CIDEr" in r.stdout
    lines = [json.loads(x) for x in out.with_suffix(".descriptions.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(x["description"] for x in lines)
    command = json.loads(out.read_text())["settings"]["command"]
    assert command.endswith("caption <2 photos> --json --channel caption,objects")


def test_readme_truth_table_is_the_committed_runs():
    """The README's truth table gives the runs recorded in docs/truth.json, as measured."""
    import json

    from conftest import ROOT

    runs = json.loads((ROOT / "docs" / "truth.json").read_text())
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- truth-table -->\n", 1)[1].split("<!-- /truth-table -->", 1)[0]
    rows = {
        "default": "default: brief, int8",
        "fp32": "brief, fp32 (detector and captioner)",
        "full": "`--verbosity full`, int8",
        "without_detector": "without the detector (`--channel caption,objects,text`)",
        "cross_entropy_stage": "the first cross-entropy stage alone with the detector "
        "(brief, int8)",
        "previous_default": "the previous default captioner (one self-critical epoch) with the "
        "detector (brief, int8)",
    }
    for name, label in rows.items():
        m = runs[name]["metrics"]
        assert runs[name]["photos"] == 400
        cells = (
            f"{m['stated_precision']:.3f} | {m['stated_coverage']:.3f} | "
            f"{m['named_precision']:.3f} | {m['recall']:.3f} | "
            f"{m['hedged_per_description']:.2f} | {m['words_per_description']:.1f} | "
            f"{m['bleu4']:.3f} / {m['cider']:.3f} |"
        )
        assert f"| {label} | {cells}" in table, (name, cells)
    # what the default settings must hold to
    d = runs["default"]["metrics"]
    assert d["stated_precision"] >= 0.95 and d["stated_coverage"] >= 0.75
    assert d["named_precision"] >= 0.80 and d["hedged_per_description"] <= 0.6
    assert d["words_per_description"] <= 18
