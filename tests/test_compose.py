"""The composer and the confidence calibration, without a model: one utterance from what the
channels found, stating only what was verified and never two different things as facts."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.channels import coco
from runtime.channels.base import Findings, Sentence, Thing
from runtime.channels.compose import NOTHING, ComposeConfig, reconcile
from runtime.channels.compose import compose as _compose
from runtime.channels.detector import group
from runtime.model.detector import Detection

pytestmark = pytest.mark.unit

KINDS = {
    "words": {
        "dog": "mammal",
        "cat": "mammal",
        "puppy": "mammal",
        "bike": "wheeled vehicle",
        "horse": "mammal",
        "car": "wheeled vehicle",
    },
    "objects": {
        "cat": "mammal",
        "dog": "mammal",
        "moped": "wheeled vehicle",
        "bear": "mammal",
        "unicycle": "wheeled vehicle",
        "wolf": "mammal",
    },
    "same": {"dog": ["dog", "puppy"]},
}


def head(name, score, sure=True):
    """The objects channel (the ImageNet head) naming one thing."""
    cls = coco.canonical(name)
    t = Thing(
        name,
        coco.with_article(name),
        score,
        cls,
        KINDS["objects"].get(name),
        confirm=cls is not None,
        rank=score,
    )
    return Findings(
        "objects", facts=(t,) if sure else (), guesses=() if sure else (t,), key=(name, sure)
    )


def guesses(*names):
    return Findings(
        "objects", guesses=tuple(Thing(n, "a " + n, 0.3, coco.canonical(n)) for n in names)
    )


def caption(text, confidence, threshold=0.5):
    return Findings("caption", sentence=Sentence(text, confidence, threshold), key=(text,))


def detector(*boxes, width=640, height=480, glimpsed=()):
    """The detector channel's findings: (class, score, x0, y0, x1, y1) per box."""
    found = [Detection(c, s, (x0, y0, x1, y1)) for c, s, x0, y0, x1, y1 in boxes]
    return Findings(
        "detector",
        facts=tuple(group(found, {}, 0.5, width, height)),
        glimpsed=tuple(glimpsed),
        covers=True,
    )


def compose(*findings, cfg=ComposeConfig()):
    return _compose([f for f in findings if f is not None], KINDS, cfg)


CAT = head("cat", 0.97)


def test_a_caption_naming_another_animal_takes_the_sure_objects_name():
    assert reconcile("a dog is running through a blue toy", "cat", KINDS) == (
        "a cat is running through a blue toy",
        (("dog", "cat"),),
    )
    assert reconcile("two dogs play in the snow", "cat", KINDS)[0] == "two cats play in the snow"
    assert reconcile("a man rides a bike", "moped", KINDS)[0] == "a man rides a moped"
    # things of another kind stay, and so does a caption that already names the object
    assert reconcile("a man sits on a bench", "cat", KINDS) == ("a man sits on a bench", ())
    assert reconcile("a dog chases a cat", "cat", KINDS) == ("a dog chases a cat", ())
    # the same thing in other words is not a contradiction: "puppy" is a dog
    assert reconcile("a puppy plays with a ball", "dog", KINDS) == ("a puppy plays with a ball", ())


def test_the_composed_description_never_states_both():
    d = compose(caption("a dog is running", 0.9), CAT)
    assert d.text == "a cat is running" and "dog" not in d.text and d.replaced == (("dog", "cat"),)
    # the objects add a sure thing the caption does not name
    assert (
        compose(caption("a man sits on a bench", 0.9), CAT).text
        == "a man sits on a bench. I see a cat"
    )
    assert (
        compose(caption("a man drinks", 0.9), guesses("cup", "bowl")).text
        == "a man drinks. maybe a cup or a bowl"
    )


def test_a_head_sure_but_not_sure_enough_to_correct_the_caption_is_hedged():
    """Dev photos showed the ImageNet head calling swimming dogs a bear at 0.73: under
    REPLACE (0.95) the caption stays and the object is only a guess, never a second fact."""
    from runtime.channels.compose import REPLACE

    bear = head("bear", 0.73)
    d = compose(caption("a dog runs through water", 0.9), bear)
    assert d.text == "a dog runs through water. maybe a bear" and d.replaced == ()
    hedged = compose(caption("a dog runs through water", 0.2), bear)
    assert hedged.text == "maybe a dog runs through water"  # brief: one guess, the caption's
    assert (
        compose(caption("a dog runs through water", 0.2), bear, cfg=ComposeConfig.full()).text
        == "maybe a dog runs through water. maybe a bear"
    )
    assert REPLACE == 0.95
    sure = head("unicycle", 0.99)
    assert compose(caption("a boy rides a bike", 0.9), sure).text == "a boy rides a unicycle"


def test_an_unsure_caption_is_hedged_and_the_objects_lead():
    d = compose(caption("a dog is running", 0.2), CAT)
    assert d.text == "I see a cat. maybe a cat is running" and d.hedged
    assert (
        compose(caption("a man drinks", 0.2), guesses("cup", "bowl")).text == "maybe a man drinks"
    )
    assert (
        compose(caption("a man drinks", 0.2), guesses("cup", "bowl"), cfg=ComposeConfig.full()).text
        == "maybe a man drinks. maybe a cup or a bowl"
    )
    # the change policy hears a hedge turn into a statement as a change
    assert (
        compose(caption("a man drinks", 0.2)).key
        != compose(
            Findings(
                "caption", sentence=Sentence("a man drinks", 0.9, 0.5), key=("a man drinks", False)
            )
        ).key
    )


def test_nothing_is_never_silence():
    assert compose(Findings("caption", key=("",)), Findings("objects")).text == NOTHING
    assert compose().text == NOTHING == "nothing I can describe"
    assert compose(CAT).text == "I see a cat"


def test_a_bundle_without_calibration_says_caption_then_objects_as_before():
    assert compose(caption("a red circle", None, None), CAT).text == "a red circle. I see a cat"


def test_detected_things_are_facts_counted_and_placed_people_first():
    d = compose(
        detector(
            ("cup", 0.8, 500, 300, 560, 380),
            ("person", 0.9, 250, 50, 400, 470),
            ("person", 0.7, 280, 60, 380, 460),
            ("dining table", 0.6, 0, 250, 200, 470),
        )
    )
    assert d.text == "I see two people ahead, a table on your left and a cup on your right"
    # clock positions
    things = group([Detection("cup", 0.9, (0, 0, 100, 100))], {}, 0.5, 640, 480, "clock")
    assert things[0].phrase == "a cup at 10 o'clock"
    # under its threshold a detection is not a fact
    assert group([Detection("cup", 0.4, (0, 0, 100, 100))], {}, 0.5, 640, 480) == []
    assert (
        group([Detection("cup", 0.4, (0, 0, 100, 100))], {"cup": 0.35}, 0.5, 640, 480)[0].phrase
        == "a cup on your left"
    )


def test_a_caption_is_stated_only_where_the_detector_saw_what_it_names():
    people = ("person", 0.9, 250, 50, 400, 470)
    tennis = caption("a man is playing tennis on a court", 0.9)
    # every thing it names was seen: stated, with what it does not mention after it
    d = compose(tennis, detector(people, ("tennis racket", 0.8, 420, 200, 470, 260)))
    assert d.caption_said == "stated"
    assert d.text == "a man is playing tennis on a court. I see a tennis racket on your right"
    # a thing it names was only glimpsed: a guess; not seen at all: left out
    dog = caption("a man is playing with a dog", 0.9)
    assert (
        compose(dog, detector(people, glimpsed=("dog",))).text
        == "I see a person ahead. maybe a man is playing with a dog"
    )
    assert compose(dog, detector(people)).text == "I see a person ahead"
    # the broccoli: nothing the caption names was seen
    plate = detector(("broccoli", 0.8, 100, 100, 500, 400))
    assert compose(dog, plate).text == "I see broccoli ahead"
    # a contradiction, another animal where a giraffe was seen: left out even if glimpsed
    giraffes = detector(
        ("giraffe", 0.9, 0, 0, 200, 400), ("giraffe", 0.8, 400, 0, 640, 400), glimpsed=("dog",)
    )
    d = compose(caption("two dogs are running in a fenced in area", 0.9), giraffes)
    assert (
        d.text == "I see two giraffes on your left and on your right"
        and d.caption_said == "left out"
    )
    # unsure of itself, though what it names was seen: a guess; very unsure: left out
    assert (
        compose(caption("a man is playing tennis", 0.2), detector(people)).text
        == "I see a person ahead. maybe a man is playing tennis"
    )
    assert (
        compose(caption("a man is playing tennis", 0.1), detector(people)).text
        == "I see a person ahead"
    )
    # many of one thing across the whole view
    crowd = detector(*[("person", 0.9, x, 50, x + 60, 400) for x in (10, 300, 560)])
    assert compose(crowd).text == "I see three people from left to right"


def test_the_imagenet_head_names_a_coco_thing_as_fact_only_where_the_detector_saw_it():
    """The head stays for what COCO lacks (a tripod, coffee); a COCO thing it is sure of is
    said with the detector's count and place, and is only a guess where the detector ran and
    did not see it."""
    tripod = head("tripod", 0.9)
    cup = detector(("cup", 0.9, 0, 0, 200, 200))
    assert compose(tripod, cup).text == "I see a cup on your left and a tripod"
    assert compose(head("cup", 0.9), cup).text == "I see a cup on your left"
    assert compose(head("dog", 0.9), cup).text == "I see a cup on your left"  # brief: no guess
    assert (
        compose(head("dog", 0.9), cup, cfg=ComposeConfig.full()).text
        == "I see a cup on your left. maybe a dog"
    )
    assert compose(head("dog", 0.9), detector()).text == "maybe a dog"  # nothing else to say
    assert compose(head("coffee", 0.9)).text == "I see coffee"  # a mass noun takes no article


def test_the_cat_photo_never_hears_of_a_dog():
    """The cat photo: the head is sure of a cat (0.97), the detector states a cat at 0.54 and
    guesses a dog at 0.43, and the caption says "a white dog". The caption takes the head's
    word, and the dog is not guessed beside the stated cat, brief or full."""
    from runtime.channels.detector import DetectorConfig, findings

    found = [Detection("cat", 0.54, (10, 10, 440, 290)), Detection("dog", 0.43, (10, 10, 440, 290))]
    seen = findings(found, 451, 300, {}, 0.5, DetectorConfig())
    for cfg in (ComposeConfig(), ComposeConfig.full()):
        d = compose(caption("a white dog is licking its nose", 0.2), CAT, seen, cfg=cfg)
        assert d.text == "I see a cat ahead. maybe a white cat is licking its nose", cfg
        assert "dog" not in d.text


def test_the_head_never_states_another_thing_of_a_kind_the_detector_saw():
    dog = ("dog", 0.9, 0, 0, 300, 300)
    # a wolf (not a COCO class) beside a detected dog: one animal, two opinions; and a guess
    # corrects no caption
    assert compose(head("wolf", 0.9), detector(dog)).text == "I see a dog on your left"
    assert (
        compose(caption("a dog runs", 0.9), head("wolf", 0.97), detector(dog)).text == "a dog runs"
    )
    # a bear the detector only glimpsed, where it stated a dog
    assert (
        compose(head("bear", 0.9), detector(dog, glimpsed=("bear",))).text
        == "I see a dog on your left"
    )
    # where it glimpsed the bear and stated nothing of its group, the two models agree
    assert compose(head("bear", 0.9), detector(glimpsed=("bear",))).text == "I see a bear"
    # a guess of another group is no second opinion: full says it
    cup = ("cup", 0.9, 0, 0, 100, 100)
    bottle = Findings(
        "detector", guesses=(Thing("bottle", "a bottle", 0.45, "bottle"),), covers=True
    )
    assert (
        compose(detector(cup), bottle, cfg=ComposeConfig.full()).text
        == "I see a cup on your left. maybe a bottle"
    )


def test_brief_says_few_things_and_full_more():
    boxes = [
        (c, 0.9, 10 * i, 10, 10 * i + 50, 60)
        for i, c in enumerate(("cup", "bottle", "chair", "laptop", "book"))
    ]
    brief = compose(detector(*boxes))
    assert brief.text.count(",") + brief.text.count(" and ") == 2  # three things
    assert compose(detector(*boxes), cfg=ComposeConfig.full()).text.count(",") == 3


def test_read_text_comes_last_and_other_channels_are_said_as_they_are():
    sign = Findings("text", read="Sign: EXIT")
    bright = Findings("brightness", said="it is bright")
    assert compose(CAT, bright, sign).text == "I see a cat. it is bright. Sign: EXIT"
    assert compose(sign).text == "Sign: EXIT"


def test_logistic_calibration_recovers_the_curve_and_the_threshold_is_chosen_on_its_data():
    from export.calibrate import choose_threshold, fit_logistic

    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 0, 20000)
    y = (rng.random(x.size) < 1 / (1 + np.exp(-(2.0 * x + 3.0)))).astype(float)
    slope, intercept = fit_logistic(x, y)
    assert slope == pytest.approx(2.0, abs=0.1) and intercept == pytest.approx(3.0, abs=0.15)
    conf = 1 / (1 + np.exp(-(slope * x + intercept)))
    t = choose_threshold(conf, y, 0.8)
    assert y[conf >= t].mean() >= 0.8 and y[conf >= t - 0.05].mean() < 0.8 + 0.01
    assert choose_threshold(conf, np.zeros_like(y), 0.5) == 1.0  # never right: always hedged


def test_confidence_is_calibrated_where_the_bundle_has_a_calibration():
    from runtime.model.confidence import calibrated

    cal = {"slope": 2.0, "intercept": 3.0, "threshold": 0.5}
    assert calibrated(-1.5, cal) == pytest.approx(0.5)
    assert calibrated(-1.5, None) == pytest.approx(np.exp(-1.5))  # the mean token probability
    assert calibrated(None, cal) is None and calibrated(float("nan"), cal) is None
