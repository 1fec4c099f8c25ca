"""Property-based tests (hypothesis): whatever the manifest, source URI or frame, the answer is
a result or the project's own error with a message, never another exception."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import MODEL
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from runtime.app.sources import describe_uri
from runtime.errors import BundleError, InputError
from runtime.model.bundle import load_bundle
from runtime.model.preprocess import PreprocessConfig, preprocess

pytestmark = pytest.mark.unit

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def manifest_dir(tmp_path_factory):
    """A copy of the default bundle whose manifest each example rewrites."""
    dst = tmp_path_factory.mktemp("fuzz") / "bundle"
    shutil.copytree(MODEL, dst)
    return dst


def _mutations():
    """(dotted path, value) edits to a valid manifest: every key can be anything."""
    base = json.loads((MODEL / "manifest.json").read_text())
    paths = []

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("torch_weights", "validation", "provenance", "io"):
                    continue  # informational blocks, not read by the loader
                paths.append(prefix + (k,))
                walk(v, prefix + (k,))

    walk(base, ())
    return base, paths


BASE, PATHS = _mutations()


@pytest.mark.system  # 300 hypothesis examples, each a manifest loaded: about 10 s
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(PATHS), json_values | st.just("<delete>")), min_size=1, max_size=3
    )
)
def test_manifest_loader_accepts_or_names_the_problem(manifest_dir, edits):
    m = json.loads(json.dumps(BASE))
    for path, value in edits:
        node = m
        for key in path[:-1]:
            if not isinstance(node, dict) or key not in node:
                break
            node = node[key]
        else:
            if isinstance(node, dict):
                if value == "<delete>":
                    node.pop(path[-1], None)
                else:
                    node[path[-1]] = value
    (manifest_dir / "manifest.json").write_text(json.dumps(m))
    try:
        bundle = load_bundle(manifest_dir)
    except BundleError as e:
        assert str(e).startswith(str(manifest_dir)) and len(str(e).splitlines()) == 1
        return
    for precision in bundle.precisions:  # a manifest that loads still guards its files
        try:
            paths = bundle.graph_paths(precision)
        except BundleError as e:
            assert str(manifest_dir) in str(e)
            continue
        assert all(p.resolve().is_relative_to(manifest_dir.resolve()) for p in paths.values())


@settings(max_examples=500, deadline=None)
@given(
    uri=st.text(max_size=40)
    | st.from_regex(r"(csi|rtsp|http|https|file|v4l2)://[\w./:-]{0,20}", fullmatch=True)
    | st.from_regex(r"/dev/video\d{0,3}", fullmatch=True)
    | st.from_regex(r"\d{1,4}", fullmatch=True)
)
@example(uri="²").via("a digit to str.isdigit, not to int()")
@example(uri="csi://²").via("the same after csi://")
@example(uri="csi://00").via("a sensor number with a leading zero")
def test_source_uri_parser_gives_a_kind_or_a_clear_error(uri):
    try:
        kind, arg = describe_uri(uri)
    except InputError as e:
        assert (uri in str(e) or repr(uri) in str(e)) and str(e).isprintable()
        return
    assert kind in ("camera", "file", "folder", "stream", "csi")
    if kind == "csi":
        assert uri.startswith("csi://") and int(uri[len("csi://") :]) == arg  # csi://00 is sensor 0
    if kind == "camera":
        assert arg == uri or arg == int(uri)


frames = st.one_of(
    arrays(
        st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int32, np.bool_]),
        st.tuples(st.integers(0, 40), st.integers(0, 40))
        | st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(0, 5)),
    ),
    st.none(),
    st.just(np.zeros((0, 5, 3), np.uint8)),
    st.integers(),
    st.text(max_size=3),
)


@settings(max_examples=400, deadline=None)
@given(frame=frames)
def test_preprocess_gives_a_normalised_blob_or_input_error(frame):
    try:
        blob = preprocess(frame, PreprocessConfig())
    except InputError as e:
        assert str(e)
        return
    assert blob.shape == (1, 3, 224, 224) and blob.dtype == np.float32
    assert np.isfinite(blob).all() and blob.min() >= -1.0 and blob.max() <= 1.0


@settings(max_examples=100, deadline=None)
@given(frame=arrays(np.float32, (8, 8, 3), elements=st.floats(width=32)))
def test_float_frames_with_nan_and_inf_stay_finite(frame):
    blob = preprocess(frame, PreprocessConfig())
    assert np.isfinite(blob).all()


# --- describe, end to end, with random options and random folders ----------------------------

FILE_KINDS = ("image", "fifo", "empty", "bomb", "truncated", "wide", "tall")
NAMES = ("plain", "latin1", "long", "control")  # the file name: 07.png, 07-caf\xe9.png (not
# UTF-8), 255 bytes, or with a newline and an ANSI escape in it
option_values = st.fixed_dictionaries(
    {},
    optional={
        "--mode": st.sampled_from(["change", "interval", "continuous", "manual", "sometimes"]),
        "--rate": st.integers(-10, 100000).map(str),
        "--volume": st.floats(-1, 6, allow_nan=False).map(lambda v: f"{v:.2f}"),
        "--interval": st.floats(-2, 3, allow_nan=False).map(lambda v: f"{v:.2f}"),
        "--stable-frames": st.integers(-3, 5).map(str),
        "--max-frames": st.integers(-2, 6).map(str),
        "--stats-interval": st.sampled_from(["-5", "0", "0.5", "1", "60", "x"]),
        "--threads": st.integers(-1, 1000).map(str),
        "--beam": st.integers(-1, 20).map(str),
        "--channel": st.sampled_from(
            ["auto", "caption", "objects", "both", "text", "barcode", "colour", "light", "all"]
        ),
    },
)


@pytest.mark.system
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    options=option_values,
    kinds=st.lists(st.tuples(st.sampled_from(FILE_KINDS), st.sampled_from(NAMES)), max_size=5),
    fast=st.booleans(),
)
@example(
    options={},
    kinds=[(k, "plain") for k in ("image", "fifo", "empty", "bomb", "truncated")],
    fast=False,
)
@example(
    options={"--channel": "all"},
    kinds=[("wide", "latin1"), ("tall", "control"), ("image", "long")],
    fast=False,
)
@example(options={"--rate": "100000"}, kinds=[], fast=False)
def test_describe_never_tracebacks_or_hangs(tmp_path_factory, options, kinds, fast):
    """Either the run ends with `end` last and exit 0, or it is refused in one line with exit
    2; whatever the files (a FIFO, an empty file, a header claiming 100000x100000, a truncated
    PNG, a 3000x20 or 20x3000 image), their names (not UTF-8, 255 bytes, control characters)
    and whatever the options."""
    import os
    import subprocess
    import sys

    import cv2
    from conftest import ROOT
    from test_caption_cli import _png_header_only

    from export.scenes import make_scene

    tmp = tmp_path_factory.mktemp("describe-fuzz")
    folder = tmp / "photos"
    folder.mkdir()
    for i, (kind, name) in enumerate(kinds):
        stem = {
            "plain": f"{i:02d}",
            "latin1": os.fsdecode(b"%02d-caf\xe9" % i),
            "long": f"{i:02d}" + "x" * 249,
            "control": f"{i:02d}\n\x1b[31m",
        }[name]
        path = folder / f"{stem}.png"
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "bomb":
            _png_header_only(path, 100000, 100000)
        else:
            scene = make_scene(7, i)[0]
            if kind in ("wide", "tall"):
                scene = cv2.resize(scene, (3000, 20) if kind == "wide" else (20, 3000))
            ok, png = cv2.imencode(".png", scene)
            path.write_bytes(png.tobytes()[: 300 if kind == "truncated" else None])
    log = tmp / "log.jsonl"
    argv = [
        sys.executable,
        "-m",
        "runtime",
        "describe",
        str(folder),
        "--no-speak",
        "--log",
        str(log),
        "--model",
        str(MODEL),
        *(a for kv in options.items() for a in kv),
    ] + ["--fast"] * fast
    r = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )  # manual mode: end of input is q
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    if r.returncode == 2:  # ours: one line; argparse's (a bad choice or number): usage, then it
        assert lines and (
            (len(lines) == 1 and lines[0].startswith("error: "))
            or lines[-1].startswith("python -m runtime describe: error: ")
        ), r.stderr
        return
    assert r.returncode == 0, r.stderr
    events = [json.loads(l) for l in log.read_text().splitlines()]
    assert events[0]["event"] == "start" and events[-1]["event"] == "end"
