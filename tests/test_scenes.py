import json

import numpy as np
import pytest

from export.scenes import COLOURS, SHAPES, make_scene, write_scenes

pytestmark = pytest.mark.unit


def test_same_seed_same_scenes_and_prefix_stable(tmp_path):
    a = write_scenes(tmp_path / "a", 6, seed=3)
    b = write_scenes(tmp_path / "b", 3, seed=3)
    rows_a = [json.loads(l) for l in a.read_text().splitlines()]
    rows_b = [json.loads(l) for l in b.read_text().splitlines()]
    assert rows_a[:3] == rows_b
    for r in rows_b:
        assert (tmp_path / "a" / r["image"]).read_bytes() == (
            tmp_path / "b" / r["image"]
        ).read_bytes()
    assert json.loads((tmp_path / "a" / "scenes.json").read_text()) == {
        "generator": "export.scenes",
        "n": 6,
        "seed": 3,
    }


def test_other_seed_other_scenes():
    assert not np.array_equal(make_scene(1, 0)[0], make_scene(2, 0)[0])


@pytest.mark.system  # 300 scenes rendered: about 2 s
def test_images_are_224_bgr_and_captions_follow_the_grammar():
    counts = {1: 0, 2: 0, 3: 0}
    words = set()
    for i in range(300):
        img, caps = make_scene(5, i)
        assert img.shape == (224, 224, 3) and img.dtype == np.uint8
        canonical = caps[0]
        words |= set(canonical.replace(",", "").split())
        n = sum(canonical.count(" " + s) for s in SHAPES) + canonical.count("crosses")
        assert len(caps) >= 2 and canonical not in caps[1:]
        counts[min(3, max(1, n))] += 1
    assert set(SHAPES) <= words | {"crosse"}  # every shape is named
    assert set(COLOURS) <= words
    assert {"small", "large", "above", "two", "three", "and"} <= words
    assert min(counts.values()) > 30  # one, two and three objects all occur


def test_single_object_caption_names_its_cell():
    from export.scenes import POSITIONS, Scene, SceneObject

    s = Scene((SceneObject("star", "red", "small", 2),), "plain")
    assert s.captions()[0] == "a small red star in the top right"
    two = Scene(
        (SceneObject("circle", "blue", "large", 0), SceneObject("cross", "white", "small", 4)),
        "plain",
    )
    assert two.captions()[0] == "a large blue circle above a small white cross"
    same = Scene(
        (SceneObject("cross", "black", "small", 3), SceneObject("cross", "black", "small", 5)),
        "noise",
    )
    assert same.captions()[0] == "two small black crosses"
    assert POSITIONS[1][1] == "in the centre"
