"""The composer and the confidence calibration, without a model: one utterance from a caption
and the objects channel, never two different things stated as facts."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.channels.compose import NOTHING, compose, reconcile
from runtime.channels.objects import Objects

KINDS = {"words": {"dog": "mammal", "cat": "mammal", "puppy": "mammal", "bike": "wheeled vehicle",
                   "horse": "mammal", "car": "wheeled vehicle"},
         "objects": {"cat": "mammal", "dog": "mammal", "moped": "wheeled vehicle", "bear": "mammal",
                     "unicycle": "wheeled vehicle"},
         "same": {"dog": ["dog", "puppy"]}}
CAT = Objects("I see a cat", ("cat",), True, [{"name": "cat", "score": 0.97}])
MAYBE_CUP = Objects("maybe a cup or a bowl", ("cup", "bowl"), False, [])
UNSURE = Objects("not sure", (), False, [])


def test_a_caption_naming_another_animal_takes_the_sure_objects_name():
    assert reconcile("a dog is running through a blue toy", "cat", KINDS) == \
        ("a cat is running through a blue toy", (("dog", "cat"),))
    assert reconcile("two dogs play in the snow", "cat", KINDS)[0] == "two cats play in the snow"
    assert reconcile("a man rides a bike", "moped", KINDS)[0] == "a man rides a moped"
    # things of another kind stay, and so does a caption that already names the object
    assert reconcile("a man sits on a bench", "cat", KINDS) == ("a man sits on a bench", ())
    assert reconcile("a dog chases a cat", "cat", KINDS) == ("a dog chases a cat", ())
    # the same thing in other words is not a contradiction: "puppy" is a dog
    assert reconcile("a puppy plays with a ball", "dog", KINDS) == ("a puppy plays with a ball", ())


def test_the_composed_description_never_states_both():
    d = compose("a dog is running", 0.9, CAT, 0.5, KINDS)
    assert d.text == "a cat is running" and "dog" not in d.text and d.replaced == (("dog", "cat"),)
    # the objects add a sure thing the caption does not name
    assert compose("a man sits on a bench", 0.9, CAT, 0.5, KINDS).text == "a man sits on a bench. I see a cat"
    # a hedged guess from the objects is left out when the caption is confident
    assert compose("a man drinks", 0.9, MAYBE_CUP, 0.5, KINDS).text == "a man drinks"


def test_a_head_sure_but_not_sure_enough_to_correct_the_caption_is_hedged():
    """Dev photos showed the ImageNet head calling swimming dogs a bear at 0.73: under
    REPLACE (0.95) the caption stays and the object is only a guess, never a second fact."""
    from runtime.channels.compose import REPLACE

    bear = Objects("I see a bear", ("bear",), True, [{"name": "bear", "score": 0.73}])
    d = compose("a dog runs through water", 0.9, bear, 0.5, KINDS)
    assert d.text == "a dog runs through water. maybe a bear" and d.replaced == ()
    hedged = compose("a dog runs through water", 0.2, bear, 0.5, KINDS)
    assert hedged.text == "maybe a bear. maybe a dog runs through water"
    assert REPLACE == 0.95
    sure = Objects("I see a unicycle", ("unicycle",), True, [{"name": "unicycle", "score": 0.99}])
    assert compose("a boy rides a bike", 0.9, sure, 0.5, KINDS).text == "a boy rides a unicycle"


def test_an_unsure_caption_is_hedged_and_the_objects_lead():
    d = compose("a dog is running", 0.2, CAT, 0.5, KINDS)
    assert d.text == "I see a cat. maybe a cat is running" and d.hedged
    assert compose("a man drinks", 0.2, MAYBE_CUP, 0.5, KINDS).text == "maybe a cup or a bowl. maybe a man drinks"
    assert compose("a man drinks", 0.2, UNSURE, 0.5, KINDS).text == "maybe a man drinks"
    # the change policy hears a hedge turn into a statement as a change
    assert compose("a man drinks", 0.2, UNSURE, 0.5).key != compose("a man drinks", 0.9, UNSURE, 0.5).key


def test_nothing_is_never_silence():
    assert compose("", None, UNSURE, 0.5, KINDS).text == "not sure"
    assert compose("", None, None, 0.5).text == NOTHING
    assert compose(None, None, CAT, 0.5).text == "I see a cat"


def test_a_bundle_without_calibration_says_caption_then_objects_as_before():
    assert compose("a red circle", None, UNSURE, None).text == "a red circle. not sure"


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
