"""`python -m runtime caption` on held-out rendered scenes, through the default bundle."""

import json
import sys

import cv2
import pytest
from conftest import MODEL, TEST_SEED, run_cli

from export.scenes import make_scene
from runtime.model.vocab import normalize

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    rows = []
    for i in range(12):
        img, caps = make_scene(TEST_SEED, i)
        path = out / f"scene{i:02d}.png"
        cv2.imwrite(str(path), img)
        rows.append((str(path), normalize(caps[0])))  # the vocabulary has no punctuation
    return rows


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_captions_name_what_was_drawn(scenes, precision):
    r = run_cli(
        "runtime",
        "caption",
        *[p for p, _ in scenes],
        "--precision",
        precision,
        "--model",
        str(MODEL),
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [l.split("\t")[0] for l in lines] == [p for p, _ in scenes]
    right = [l.split("\t")[1] == c for l, (_, c) in zip(lines, scenes)]
    assert sum(right) >= 10, list(zip(lines, [c for _, c in scenes]))


def test_json_output_has_caption_steps_and_timings(scenes):
    path, canonical = scenes[0]
    r = run_cli("runtime", "caption", path, "--json", "--model", str(MODEL))
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert row["image"] == path and row["caption"] == canonical
    assert row["steps"] == len(canonical.split()) + 1  # every word, then eos
    t = row["timings_ms"]
    assert set(t) == {"preprocess", "encoder", "decoder", "total"}
    assert (
        0 < t["encoder"] < t["total"]
        and t["total"] >= t["preprocess"] + t["encoder"] + t["decoder"] - 0.01
    )


def test_any_frame_size_is_captioned(scenes, tmp_path):
    path, canonical = scenes[0]
    big = cv2.resize(cv2.imread(path), (640, 640), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / "big.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    r = run_cli(
        "runtime",
        "caption",
        str(tmp_path / "big.jpg"),
        "--precision",
        "fp32",
        "--model",
        str(MODEL),
    )
    assert r.returncode == 0 and r.stdout.split("\t")[1].strip() == canonical


@pytest.mark.parametrize(
    "args,message",
    [
        (["no/such.png", "--model", str(MODEL)], "no/such.png: no such image file"),
        (["README.md", "--model", str(MODEL)], "README.md: cannot decode image"),
        (["README.md", "--model", "no/bundle"], "no/bundle/manifest.json: no bundle manifest here"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(args, message):
    r = run_cli("runtime", "caption", *args)
    assert r.returncode == 2
    assert r.stderr == f"error: {message}\n"
    assert r.stdout == ""


def test_runtime_works_with_torch_unimportable(scenes, tmp_path):
    """A sitecustomize that makes `import torch` fail, then the real CLI in a subprocess."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch is blocked for this test')\n"
        "sys.meta_path.insert(0, _NoTorch())\n"
    )
    env = {"PYTHONPATH": str(tmp_path)}
    blocked = run_cli("-c", "import torch", env=env, module=False)
    assert "torch is blocked" in blocked.stderr  # the blocker really works
    path, canonical = scenes[0]
    code = (
        f"import sys, runtime.__main__ as m; rc = m.main(['caption', {str(path)!r}, '--model', "
        f"{str(MODEL)!r}]); assert not any(k.split('.')[0] == 'torch' for k in sys.modules); "
        "sys.exit(rc)"
    )
    r = run_cli("-c", code, env=env, module=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\t")[1].strip() == canonical


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG whose header claims width x height, with one tiny IDAT: what a hostile upload or a
    cut-off transfer looks like to a decoder."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def test_several_images_caption_the_good_ones_and_exit_2_for_the_bad(scenes, tmp_path):
    good, good2 = scenes[0][0], scenes[1][0]
    _png_header_only(tmp_path / "huge.png", 100000, 100000)
    r = run_cli(
        "runtime",
        "caption",
        good,
        str(tmp_path / "nope.png"),
        str(tmp_path),
        str(tmp_path / "huge.png"),
        good2,
        "--model",
        str(MODEL),
    )
    assert r.returncode == 2
    assert [l.split("\t")[0] for l in r.stdout.splitlines()] == [good, good2]
    errors = r.stderr.splitlines()
    assert errors[0] == f"error: {tmp_path / 'nope.png'}: no such image file"
    assert errors[1] == f"error: {tmp_path}: is a folder, not an image (describe plays a folder)"
    assert errors[2] == (
        f"error: {tmp_path / 'huge.png'}: 100000x100000 pixels is over the "
        "50-megapixel limit for an image"
    )
    assert len(errors) == 3
    assert "Traceback" not in r.stderr


def test_commands_work_outside_the_repository_root(tmp_path):
    """The default bundle is found from the package, not from the current folder."""
    import os
    import subprocess

    from conftest import REAL_MODEL, ROOT

    photo = ROOT / "assets" / "photos" / "chelsea.jpg"
    r = subprocess.run(
        [sys.executable, "-m", "runtime", "caption", str(photo), "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr
    line = json.loads(r.stdout)
    assert "cat" in line["description"].split()  # the real-photo bundle, not an error
    assert not (tmp_path / "models").exists() and REAL_MODEL.is_dir()
