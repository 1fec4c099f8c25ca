"""Hostile bundles, bad frames, an unwritable log and signals: each gets one clear line or a
logged reason, a non-zero exit where the run cannot go on, and never a traceback."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import MODEL, ROOT, TEST_SEED, needs_torch, run_cli

from export.scenes import make_scene
from runtime.errors import BundleError
from runtime.model import io_spec
from runtime.model.bundle import load_bundle, sha256

pytestmark = pytest.mark.system


@pytest.fixture
def bundle_copy(tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(MODEL, dst)
    return dst


@pytest.fixture(scope="module")
def scene_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    cv2.imwrite(str(path), make_scene(TEST_SEED, 0)[0])
    return path


def edit_manifest(bundle: Path, edit) -> Path:
    path = bundle / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))
    return path


def replace_graph(bundle: Path, precision: str, graph: str, model) -> Path:
    """Write an onnx ModelProto as one of the bundle's graphs, with a matching hash."""
    import onnx

    target = bundle / io_spec.graph_file(precision, graph)
    onnx.save(model, str(target))
    digest = sha256(target)
    edit_manifest(bundle, lambda m: m["files"][precision][graph].update(sha256=digest))
    return target


def caption_error(bundle: Path, image: Path, precision: str = "fp32") -> str:
    r = run_cli("runtime", "caption", str(image), "--model", str(bundle), "--precision", precision)
    assert r.returncode == 2, r.stdout
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    return r.stderr.strip()


# --- hostile bundles -------------------------------------------------------------------------


@pytest.mark.parametrize("location", ["../../../../etc/passwd", "/etc/passwd"])
@needs_torch
def test_external_data_outside_the_bundle_is_refused(bundle_copy, scene_png, location):
    import onnx
    from onnx import TensorProto

    model = onnx.load(str(bundle_copy / io_spec.graph_file("fp32", "decoder_step")))
    w = model.graph.initializer[0]
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("length", "64")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    target = replace_graph(bundle_copy, "fp32", "decoder_step", model)
    err = caption_error(bundle_copy, scene_png)
    assert err == (
        f"error: {target}: tensor {w.name!r} points its external data outside the "
        f"bundle ({location})"
    )


@needs_torch
def test_unsupported_opset_is_named(bundle_copy, scene_png):
    import onnx

    model = onnx.load(str(bundle_copy / io_spec.graph_file("fp32", "encoder")))
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            op.version = 99
    target = replace_graph(bundle_copy, "fp32", "encoder", model)
    assert caption_error(bundle_copy, scene_png) == (
        f"error: {target}: opset 99 is not supported (this runtime runs opsets 13..21)"
    )


@needs_torch
def test_graph_with_the_right_names_but_wrong_shapes_is_refused(bundle_copy, scene_png):
    """A decoder from some other model: same tensor names, hidden size 100 instead of 192."""
    from onnx import TensorProto, helper

    f32 = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info("token", TensorProto.INT64, ["batch"]),
        helper.make_tensor_value_info("h", f32, ["batch", 100]),
        helper.make_tensor_value_info("c", f32, ["batch", 100]),
        helper.make_tensor_value_info("regions", f32, ["batch", 49, 192]),
        helper.make_tensor_value_info("regions_att", f32, ["batch", 49, 96]),
    ]
    outputs = [helper.make_tensor_value_info(n, f32, None) for n in io_spec.DECODER_OUTPUTS]
    nodes = [
        helper.make_node("Identity", ["h"], ["logits"]),
        helper.make_node("Identity", ["h"], ["h_next"]),
        helper.make_node("Identity", ["c"], ["c_next"]),
        helper.make_node("ReduceMean", ["regions_att"], ["alpha"], axes=[2], keepdims=0),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "other", inputs, outputs),
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=8,
    )
    target = replace_graph(bundle_copy, "fp32", "decoder_step", model)
    assert caption_error(bundle_copy, scene_png) == (
        f"error: {target}: input 'h' is tensor(float) ['batch', 100], the contract wants "
        f"tensor(float) ['batch', 192]"
    )


def test_graph_with_other_input_names_is_refused(bundle_copy, scene_png):
    """The encoder copied over the decoder-step graph: the names give it away."""
    target = bundle_copy / io_spec.graph_file("int8", "decoder_step")
    shutil.copy(bundle_copy / io_spec.graph_file("int8", "encoder"), target)
    digest = sha256(target)
    edit_manifest(bundle_copy, lambda m: m["files"]["int8"]["decoder_step"].update(sha256=digest))
    err = caption_error(bundle_copy, scene_png, "int8")
    assert (
        err.startswith(f"error: {target}: graph inputs ['image'] / outputs")
        and "do not match the SceneSpeak contract ['c', 'h', 'regions', 'regions_att', 'token']"
        in err
    )


def test_graph_that_is_not_onnx_is_refused(bundle_copy, scene_png):
    target = bundle_copy / io_spec.graph_file("int8", "encoder")
    target.write_bytes(b"\xff" * 64)  # a varint that never ends
    digest = sha256(target)
    edit_manifest(bundle_copy, lambda m: m["files"]["int8"]["encoder"].update(sha256=digest))
    assert caption_error(bundle_copy, scene_png, "int8") == (
        f"error: {target}: not a valid ONNX file (truncated varint)"
    )


def _set(path: str, value):
    def edit(m):
        *parents, last = path.split(".")
        node = m
        for key in parents:
            node = node[key]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value

    return edit


@pytest.mark.unit
@pytest.mark.parametrize(
    "path, value, message",
    [
        ("format", KeyError, "missing key 'format'"),
        (
            "format",
            999,
            "format 999 is not 'scenespeak-bundle/1' (not a SceneSpeak bundle, or one "
            "this version cannot read)",
        ),
        ("max_len", "24", "'max_len' has the wrong type (str; expected an integer)"),
        ("max_len", True, "'max_len' has the wrong type (bool; expected an integer)"),
        ("max_len", 10**9, "max_len 1000000000 is outside 1..1000"),
        ("vocab.words", {"a": 1}, "'words' has the wrong type (dict; expected a list)"),
        ("vocab.eos", 999, "vocab.eos is 999; it must be 2, the place of <eos> in vocab.words"),
        ("vocab.bos", -1, "vocab.bos is -1; it must be 1, the place of <bos> in vocab.words"),
        ("vocab.unk", "3", "'unk' has the wrong type (str; expected an integer)"),
        (
            "vocab.words",
            ["<pad>", "<bos>", "<eos>", "<unk>", "a", "dog", "a"],
            "vocab.words lists 'a' more than once",
        ),
        (
            "vocab.words",
            ["<pad>", "<bos>", "<eos>", "<unk>", 7],
            "vocab.words must be 5..1000000 strings",
        ),
        (
            "preprocess.size",
            100000,
            "bad preprocess block (size 100000 must be a multiple of 32 in 32..1024)",
        ),
        ("preprocess.std", 0, "bad preprocess block (std 0 must be positive)"),
        ("preprocess.crop", "centre", "bad preprocess block (unknown keys ['crop'])"),
        (
            "files.fp32.encoder.sha256",
            "abc",
            "files.fp32.encoder.sha256 is not a sha256 hex digest",
        ),
        ("files.fp32.encoder.path", 5, "'path' has the wrong type (int; expected a string)"),
        ("files.fp64", {}, "unknown precision 'fp64'"),
        ("files", {}, "lists no graph files"),
        (
            "objects.path",
            "../../../etc/passwd",
            "objects points outside the bundle (../../../etc/passwd)",
        ),
        ("objects.sha256", "abc", "objects.sha256 is not a sha256 hex digest"),
    ],
)
def test_manifest_schema_errors_name_the_field(bundle_copy, path, value, message):
    manifest = edit_manifest(bundle_copy, _set(path, value))
    with pytest.raises(BundleError) as e:
        load_bundle(bundle_copy)
    assert str(e.value).startswith(f"{manifest}") and message in str(e.value), str(e.value)


@pytest.mark.unit
def test_huge_or_deeply_nested_manifest_is_refused(bundle_copy):
    manifest = bundle_copy / "manifest.json"
    manifest.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_copy)
    with open(manifest, "wb") as f:
        f.truncate(17 * 2**20)
    with pytest.raises(BundleError, match="too large for a manifest"):
        load_bundle(bundle_copy)


@pytest.mark.unit
@needs_torch
def test_checkpoints_load_weights_only():
    """Pickled code in a checkpoint must never run: every torch.load is weights_only=True."""
    import ast

    calls = []
    for path in (ROOT / "export").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                safe = any(
                    k.arg == "weights_only" and getattr(k.value, "value", None) is True
                    for k in node.keywords
                )
                calls.append((f"{path.name}:{node.lineno}", safe))
    assert len(calls) >= 2 and all(safe for _, safe in calls), calls


@needs_torch
def test_pickled_code_in_a_checkpoint_is_not_run(tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    ckpt = tmp_path / "evil.pt"
    ckpt.write_bytes(pickle.dumps({"config": {}, "state": Payload()}))
    r = run_cli("export", "onnx", "--checkpoint", str(ckpt), "--out", str(tmp_path / "b"))
    assert r.returncode != 0 and not marker.exists()
    assert "Traceback" not in r.stderr and "evil.pt" in r.stderr.strip().splitlines()[-1]


# --- bad frames ------------------------------------------------------------------------------


def bad_frame_folder(root: Path) -> dict[str, str]:
    """Every kind of image a folder source can hold -> 'caption' or 'skipped'."""
    root.mkdir()
    scene = make_scene(TEST_SEED, 5)[0]
    cv2.imwrite(str(root / "01-gray.png"), cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(root / "02-rgba.png"), cv2.cvtColor(scene, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(root / "03-16bit.png"), scene.astype(np.uint16) * 257)
    cv2.imwrite(str(root / "04-tiny.png"), scene[:1, :1])
    cv2.imwrite(
        str(root / "05-huge.jpg"), cv2.resize(scene, (8000, 6000), interpolation=cv2.INTER_NEAREST)
    )
    cv2.imwrite(str(root / "06-float.tiff"), scene.astype(np.float32) / 255)
    png = cv2.imencode(".png", scene)[1].tobytes()
    (root / "07-truncated.png").write_bytes(png[: len(png) // 3])
    (root / "08-corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    (root / "09-empty.png").write_bytes(b"")
    cv2.imwrite(str(root / "10-normal.png"), scene)
    return {
        "01-gray.png": "caption",
        "02-rgba.png": "caption",
        "03-16bit.png": "caption",
        "04-tiny.png": "caption",
        "05-huge.jpg": "caption",
        "06-float.tiff": "caption",
        "07-truncated.png": "skipped",
        "08-corrupt.jpg": "skipped",
        "09-empty.png": "skipped",
        "10-normal.png": "caption",
    }


def test_bad_images_in_a_folder_are_captioned_or_skipped_with_a_reason(tmp_path):
    expected = bad_frame_folder(tmp_path / "frames")
    log = tmp_path / "log.jsonl"
    r = run_cli(
        "runtime",
        "describe",
        str(tmp_path / "frames"),
        "--mode",
        "continuous",
        "--no-speak",
        "--log",
        str(log),
        "--model",
        str(MODEL),
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    lines = [json.loads(l) for l in log.read_text().splitlines()]
    names = sorted(expected)
    got = {}
    for line in lines:
        if line["event"] in ("caption", "skipped") and line["frame"] >= 0:
            got.setdefault(names[line["frame"]], line)
    assert {n: l["event"] for n, l in got.items()} == expected
    for name, line in got.items():
        if line["event"] == "skipped":
            assert line["reason"] == f"{name}: cannot decode image"
    canonical = next(
        l["caption"]
        for l in lines
        if l["event"] == "caption" and names[l["frame"]] == "10-normal.png"
    )
    for name in (
        "02-rgba.png",
        "03-16bit.png",
        "06-float.tiff",
    ):  # lossless conversions: same scene
        assert got[name]["caption"] == canonical, name
    assert lines[-1]["event"] == "end" and lines[-1]["frames"] == len(expected)


# --- the log and signals ---------------------------------------------------------------------


@pytest.mark.parametrize("log", ["/dev/full", "/dev/null/not-a-dir/log.jsonl"])
def test_unwritable_log_warns_once_and_lines_go_to_stderr(tmp_path, log):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i}.png"), make_scene(TEST_SEED, i)[0])
    r = run_cli(
        "runtime", "describe", str(frames), "--no-speak", "--log", log, "--model", str(MODEL)
    )
    assert r.returncode == 0, r.stderr
    warnings = [l for l in r.stderr.splitlines() if l.startswith("warning:")]
    assert len(warnings) == 1 and (log in warnings[0] or "log write failed" in warnings[0]), (
        warnings
    )
    events = [json.loads(l)["event"] for l in r.stderr.splitlines() if l.startswith("{")]
    assert events.count("caption") == 3 and events[-1] == "end"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_shut_down_cleanly_with_end_last(tmp_path, sig):
    log = tmp_path / "log.jsonl"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime",
            "describe",
            "--no-speak",
            "--log",
            str(log),
            "--model",
            str(MODEL),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and '"event": "caption"' not in (
        log.read_text() if log.exists() else ""
    ):
        time.sleep(0.1)
    p.send_signal(sig)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert "Traceback" not in err
    lines = [json.loads(l) for l in log.read_text().splitlines()]
    assert lines[-1]["event"] == "end"
    assert any(l["event"] == "spoken" and l["caption"] == "SceneSpeak stopped" for l in lines)
