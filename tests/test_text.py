"""The text channel: RapidOCR's own PP-OCRv6 models on ONNX Runtime, offline, on rendered signs
pasted into real photos and on scikit-image's page; reading order, the spoken form, positions."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest
from conftest import REAL_MODEL, ROOT, Voice, channels_of, run_cli
from signs import make_sign, read_right

from runtime.channels.places import third
from runtime.channels.text import TextConfig, TextLine, TextReader, reading_order, spoken

pytestmark = pytest.mark.unit

N_SIGNS = 40


@pytest.fixture(scope="module")
def reader():
    return TextReader(TextConfig(threads=2))


@pytest.mark.system  # OCR of 20 real photos: about 20 s
def test_rendered_signs_in_real_photos_are_read_word_for_word(reader):
    """Six fonts, six colour pairs, a perspective tilt, blur and JPEG at quality 70."""
    signs = [make_sign(i) for i in range(N_SIGNS)]
    right = [read_right(reader.read(s.image), s.text) for s in signs]
    wrong = [s.text for s, ok in zip(signs, right) if not ok]
    print(f"\nsigns read with every word right: {sum(right)}/{N_SIGNS}; missed {wrong}")
    assert sum(right) >= 0.9 * N_SIGNS, wrong


def test_the_committed_photos_have_no_text_to_read(reader):
    """Stray letters read in plain photos score under the threshold: nothing is said."""
    for path in sorted((ROOT / "assets" / "photos").glob("*.jpg")):
        assert reader.read(cv2.imread(str(path))) == [], path.name


@pytest.mark.system
def test_skimage_page_reads_its_title_first(tmp_path):
    skimage = pytest.importorskip("skimage.data")
    page = tmp_path / "page.png"
    cv2.imwrite(str(page), skimage.page())
    r = run_cli(
        "runtime", "caption", str(page), "--channel", "text", "--json", "--model", str(REAL_MODEL)
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["text"][0]["text"] == "Region-based segmentation"
    assert out["description"].startswith("Text: Region-based segmentation. ")
    assert out["description"].endswith(". more text")  # a page: its first lines, then "more text"
    for line in out["text"]:
        assert set(line) == {"text", "score", "box", "where"} and len(line["box"]) == 4
        assert line["score"] >= TextConfig().min_score


@pytest.mark.system
@pytest.mark.parametrize("x,side", [(0.17, "left"), (0.83, "right")])
def test_a_sign_is_placed_left_or_right_in_a_wide_frame(tmp_path, x, side):
    sign = make_sign(1, size=(1280, 720), x=x)
    path = tmp_path / "wide.jpg"
    cv2.imwrite(str(path), sign.image)
    r = run_cli("runtime", "caption", str(path), "--json", "--model", str(REAL_MODEL))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    line = next(l for l in out["text"] if l["text"] == sign.text)
    assert line["where"] == side
    assert out["description"].endswith(f"Sign: {sign.text}")


@pytest.mark.system
def test_it_needs_no_network(tmp_path):
    """Every socket refused: the reader still builds and reads (its models are the wheel's)."""
    script = tmp_path / "offline.py"
    script.write_text(
        "import socket, sys\n"
        "def refuse(*a, **k):\n"
        "    raise OSError('network blocked by the test')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        f"sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]\n"
        "from signs import make_sign\n"
        "from runtime.channels.text import TextReader\n"
        "print([l.text for l in TextReader().read(make_sign(1).image)])\n"
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['EMERGENCY EXIT']"


def _line(text, x0, y0, x1, y1, width=640):
    return TextLine(text, 0.99, (x0, y0, x1, y1), third(x0, x1, width))


def test_reading_order_is_rows_then_left_to_right():
    lines = [
        _line("world", 300, 102, 400, 130),
        _line("second", 10, 200, 120, 230),
        _line("hello", 10, 100, 120, 128),
    ]
    assert [l.text for l in reading_order(lines)] == ["hello", "world", "second"]


def test_spoken_form_signs_pages_and_nothing():
    a, b, c, d = (_line(t, 0, 30 * i, 50, 30 * i + 20) for i, t in enumerate("ABCD"))
    assert spoken([a]) == "Sign: A" and spoken([a, b]) == "Sign: A. B"
    assert spoken([a, b, c]) == "Text: A. B. C"
    assert spoken([a, b, c, d]) == "Text: A. B. C. more text"
    assert spoken([a, b, c, d], max_lines=10) == "Text: A. B. C. D"
    assert spoken([]) == ""


def test_where_is_the_third_of_the_width():
    assert [third(x, x + 10, 300) for x in (0, 85, 145, 195, 290)] == [
        "left",
        "left",
        "ahead",
        "right",
        "right",
    ]


def test_manual_mode_t_reads_all_of_a_page(reader):
    """The key reads every line, not the brief first three."""
    skimage = pytest.importorskip("skimage.data")
    from runtime.app.eventlog import EventLog
    from runtime.app.loop import DescribeLoop, LoopConfig
    from runtime.app.sources import Frame

    page = cv2.cvtColor(skimage.page(), cv2.COLOR_GRAY2BGR)
    voice = Voice()
    loop = DescribeLoop(
        channels_of(REAL_MODEL, "caption,objects,text"),
        None,
        voice,
        EventLog(None),
        LoopConfig(mode="manual"),
    )
    loop.on_key("t", Frame(page, 0, 0.0))
    loop.slow.close()
    lines = reader.read(page)
    assert len(lines) > 3 and voice.said == ["Text: " + ". ".join(l.text for l in lines)]


def test_the_engine_follows_the_device_profile():
    """TensorRT only where its Python packages are (a Jetson's JetPack); else ONNX Runtime,
    which takes CUDA where the profile offers it."""
    import importlib.util

    from runtime.channels.text import engine_for

    has_trt = all(importlib.util.find_spec(m) is not None for m in ("tensorrt", "cuda"))
    assert engine_for(
        ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    ) == ("tensorrt" if has_trt else "onnxruntime")
    assert engine_for(("CUDAExecutionProvider", "CPUExecutionProvider")) == "onnxruntime"
    assert engine_for(("CPUExecutionProvider",)) == "onnxruntime"
