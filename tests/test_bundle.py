"""Bundle loading: the default bundle is intact; damaged ones are refused by name."""

import json
import shutil

import cv2
import pytest

from conftest import MODEL, run_cli
from export.scenes import make_scene
from runtime import io_spec
from runtime.bundle import load_bundle, sha256
from runtime.errors import BundleError


@pytest.fixture
def bundle_copy(tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(MODEL, dst)
    return dst


def test_default_bundle_is_complete_and_intact():
    b = load_bundle(MODEL)
    assert b.precisions == ("fp32", "fp16", "int8")
    for p in b.precisions:
        assert set(b.graph_paths(p)) == set(io_spec.GRAPHS)
    m = b.manifest
    assert m["provenance"]["recipe"] == "make models"
    assert m["provenance"]["train_data"]["seed"] == 1
    assert b.vocab.words[b.vocab.eos] == "<eos>" and b.max_len >= 16
    assert m["preprocess"]["size"] == 224
    v = m["validation"]  # recorded by the export, which fails below these
    assert v["fp32"]["decoder_step.logits"] <= 1e-4 and v["fp32"]["caption_agreement"] == 1.0
    assert v["fp16"]["caption_agreement"] >= 0.97 and v["int8"]["caption_agreement"] >= 0.97


def test_default_bundle_fits_in_git():
    size = sum(f.stat().st_size for f in MODEL.rglob("*") if f.is_file())
    assert size <= 30_000_000, f"bundle is {size / 1e6:.2f} MB"


def test_each_weight_is_stored_once_and_int8_is_at_most_35_percent_of_fp32():
    """fp32 and fp16 read one fp32 weights file per graph (fp16 casts it when it loads), and
    int8 carries its own int8 weights, at most 35% of what fp32 loads."""
    b = load_bundle(MODEL)
    for graph in io_spec.GRAPHS:
        fp32, fp16 = b.files["fp32"][graph], b.files["fp16"][graph]
        assert fp32.data is not None and fp32.data == fp16.data
        assert fp16.path.stat().st_size < 0.01 * fp32.data.path.stat().st_size  # no copy inside
        assert b.files["int8"][graph].data is None
    assert b.size_bytes("int8") <= 0.35 * b.size_bytes("fp32")
    assert b.size_bytes("fp16") == b.size_bytes("fp32") + sum(
        b.files["fp16"][g].path.stat().st_size - b.files["fp32"][g].path.stat().st_size for g in io_spec.GRAPHS)


def test_changed_weights_file_is_refused_for_both_precisions_that_read_it(bundle_copy):
    target = bundle_copy / io_spec.weights_file("encoder")
    data = bytearray(target.read_bytes())
    data[-5] ^= 0x01  # one bit of the last weight
    target.write_bytes(bytes(data))
    for precision in ("fp32", "fp16"):
        with pytest.raises(BundleError, match=r"encoder\.weights: sha256 mismatch"):
            load_bundle(bundle_copy).graph_paths(precision)
    assert set(load_bundle(bundle_copy).graph_paths("int8")) == set(io_spec.GRAPHS)


def test_external_data_the_manifest_does_not_list_is_refused(bundle_copy):
    """A graph may read external data only from the weights file its manifest entry hashes."""
    shutil.copy(bundle_copy / io_spec.weights_file("encoder"), bundle_copy / "other12.weights")
    target = bundle_copy / io_spec.graph_file("fp32", "encoder")
    target.write_bytes(target.read_bytes().replace(b"encoder.weights", b"other12.weights"))
    manifest = bundle_copy / "manifest.json"
    m = json.loads(manifest.read_text())
    m["files"]["fp32"]["encoder"]["sha256"] = sha256(target)
    manifest.write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"encoder\.fp32\.onnx: tensor .* reads external data from "
                                          r"other12\.weights, which the manifest does not list"):
        load_bundle(bundle_copy).graph_paths("fp32")
    # a location no file system takes: named, not a traceback
    target.write_bytes(target.read_bytes().replace(b"other12.weights", b"encoder\0weights"))
    m["files"]["fp32"]["encoder"]["sha256"] = sha256(target)
    manifest.write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"names its external data 'encoder\\x00weights', which is "
                                          r"not a usable path"):
        load_bundle(bundle_copy).graph_paths("fp32")


def test_changed_file_is_refused_with_its_name(bundle_copy, tmp_path):
    target = bundle_copy / io_spec.graph_file("fp32", "decoder_step")
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"decoder_step\.fp32\.onnx: sha256 mismatch"):
        load_bundle(bundle_copy).graph_paths("fp32")
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), make_scene(7, 0)[0])
    r = run_cli("runtime", "caption", str(img), "--model", str(bundle_copy), "--precision", "fp32")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "decoder_step.fp32.onnx: sha256 mismatch" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_file_and_bad_manifest_are_named(bundle_copy):
    (bundle_copy / io_spec.graph_file("int8", "encoder")).unlink()
    with pytest.raises(BundleError, match=r"encoder\.int8\.onnx: file missing"):
        load_bundle(bundle_copy).graph_paths("int8")
    manifest = bundle_copy / "manifest.json"
    m = json.loads(manifest.read_text())
    del m["vocab"]
    manifest.write_text(json.dumps(m))
    with pytest.raises(BundleError, match="missing key 'vocab'"):
        load_bundle(bundle_copy)
    manifest.write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_copy)


def test_paths_outside_the_bundle_are_refused(bundle_copy):
    manifest = bundle_copy / "manifest.json"
    m = json.loads(manifest.read_text())
    m["files"]["fp32"]["encoder"]["path"] = "../../etc/passwd"
    manifest.write_text(json.dumps(m))
    with pytest.raises(BundleError, match="points outside the bundle"):
        load_bundle(bundle_copy)


def test_truncated_graph_with_matching_hash_is_refused(bundle_copy):
    from runtime.captioner import Captioner

    target = bundle_copy / io_spec.graph_file("fp32", "encoder")
    target.write_bytes(target.read_bytes()[:1000])
    manifest = bundle_copy / "manifest.json"
    m = json.loads(manifest.read_text())
    m["files"]["fp32"]["encoder"]["sha256"] = sha256(target)
    manifest.write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"encoder\.fp32\.onnx: not a valid ONNX file \(field runs past the end\)"):
        Captioner(load_bundle(bundle_copy), "fp32")


def test_vocabulary_that_does_not_match_the_decoder_is_refused(bundle_copy):
    from runtime.captioner import Captioner

    manifest = bundle_copy / "manifest.json"
    m = json.loads(manifest.read_text())
    m["vocab"]["words"].append("zebra")
    manifest.write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"decoder has \d+ outputs but the vocabulary has \d+ words"):
        Captioner(load_bundle(bundle_copy), "int8")
