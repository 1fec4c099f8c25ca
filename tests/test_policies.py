"""Each speech policy on its own, with stand-in descriptions and frames: no model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from runtime.app.policies import (
    Change,
    ChangeGate,
    Continuous,
    Find,
    Interval,
    Manual,
    Slideshow,
    make_policy,
)
from runtime.channels.places import spoken_place
from runtime.channels.text import TextLine, words

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class D:
    """What a policy reads of a Description."""

    text: str
    key: tuple = ()
    places: tuple = ()  # (thing's name, where), the surest first
    words: tuple = ()  # (word read, where)


def frame(level: int) -> np.ndarray:
    return np.full((48, 64, 3), level, np.uint8)


def d(text):
    return D(text, (text,))


def test_change_gate_passes_a_changed_scene_only():
    gate = ChangeGate()
    assert gate.passes(frame(10))  # the first frame
    assert not gate.passes(frame(12))  # sensor noise
    assert gate.passes(frame(200))
    gate.reset()
    assert gate.passes(frame(200))  # after a reset the scene is new


def test_change_says_a_stable_description_once():
    p = Change(stable_frames=2)
    assert p.wants(frame(10), 0) and p.decide(d("a cat"), 0) is None  # seen once
    assert p.wants(frame(10), 0)  # still stabilising: the next frame is described too
    say = p.decide(d("a cat"), 0)
    assert say.text == "a cat" and say.interrupt
    assert not p.wants(frame(10), 0)  # static scene: no more captions
    assert p.wants(frame(200), 0)
    assert p.decide(d("a cat"), 0) is None and p.decide(d("a cat"), 0) is None  # not twice in a row
    assert p.decide(d("a dog"), 0) is None and p.decide(d("a dog"), 0).text == "a dog"


def test_change_reset_says_the_same_scene_again():
    """A camera that comes back describes its scene afresh, changed or not."""
    p = Change(stable_frames=1)
    assert p.wants(frame(10), 0) and p.decide(d("a cat"), 0).text == "a cat"
    assert not p.wants(frame(10), 0)
    p.reset()
    assert p.wants(frame(10), 0) and p.decide(d("a cat"), 0).text == "a cat"


def test_interval_describes_every_period():
    p = Interval(5.0)
    assert p.wants(frame(1), 0.0) and not p.wants(frame(1), 4.9) and p.wants(frame(1), 5.0)
    assert p.decide(d("a cat"), 5.0).text == "a cat"
    p.reset()
    assert p.wants(frame(1), 5.1)


def test_continuous_and_slideshow_say_everything():
    for p in (Continuous(), Slideshow()):
        assert p.wants(frame(1), 0) and p.wants(frame(1), 0)
        assert p.decide(d("a cat"), 0).text == p.decide(d("a cat"), 0).text == "a cat"


def test_manual_never_describes_on_its_own():
    p = Manual()
    assert not p.wants(frame(1), 0) and not p.wants(frame(200), 0)
    assert p.decide(d("a cat"), 0).interrupt


def seen(name, where):
    return D("x", places=((name, where),))


def test_find_is_silent_until_seen_then_says_where_and_only_when_it_moves():
    p = Find("cup")
    assert p.decide(D("a table"), 0) is None  # not there yet
    assert p.decide(seen("bowl", "left"), 0) is None  # something else
    assert p.decide(seen("cup", "left"), 0).text == "cup on your left"
    assert p.decide(seen("cup", "left"), 0) is None  # stays put: silent
    assert p.decide(seen("cup", "ahead"), 0).text == "cup ahead"
    p.reset()
    assert p.decide(seen("cup", "ahead"), 0).text == "cup ahead"


def test_find_a_word_of_text_and_clock_positions():
    p = Find("exit", style="clock")
    line = TextLine("EMERGENCY EXIT", 0.99, (500, 10, 620, 40), "right")
    assert p.decide(D("a door", words=words([line])), 0).text == "exit at 2 o'clock"
    # a word read is matched as it is: a sign saying COFFEE or MEN is no cup or person
    for query, sign in (("cup", "COFFEE"), ("person", "MEN"), ("chair", "SEAT")):
        read = words([TextLine(sign, 0.99, (10, 10, 90, 40), "left")])
        assert Find(query).decide(D("a wall", words=read), 0) is None, query
        assert (
            Find(sign.lower()).decide(D("a wall", words=read), 0).text
            == f"{sign.lower()} on your left"
        )
    assert spoken_place("left", "clock") == "at 10 o'clock"
    assert spoken_place("right") == "on your right"


def test_find_knows_a_thing_by_any_of_its_names():
    """--find takes the names people use: a COCO class is found by its spoken name, its
    plural or another word for it, whichever channel saw it."""
    for query, said in (
        ("mobile phone", "phone"),
        ("cell phone", "phone"),
        ("sofa", "sofa"),
        ("couch", "sofa"),
        ("cups", "cup"),
        ("person", "person"),
        ("bottle", "bottle"),
        ("chair", "chair"),
        ("TV", "TV"),
    ):
        p = Find(query)
        assert p.decide(seen("table", "left"), 0) is None, query
        assert p.decide(seen(said, "right"), 0).text == f"{query.lower()} on your right", query
    assert Find("chair").decide(seen("sofa", "left"), 0) is None  # another thing of its kind


def test_make_policy_follows_the_config():
    from runtime.app.loop import LoopConfig

    assert isinstance(make_policy(LoopConfig()), Change)
    assert isinstance(make_policy(LoopConfig(mode="manual", each_still=True)), Manual)
    assert isinstance(make_policy(LoopConfig(each_still=True)), Slideshow)
    assert isinstance(make_policy(LoopConfig(find="cup")), Find)
    assert isinstance(make_policy(LoopConfig(mode="interval", interval_s=2)), Interval)
