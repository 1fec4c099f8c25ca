"""The barcode channel (runtime/channels/barcode.py): rendered EAN-13, UPC-A and QR codes in
real photos (tests/codes.py, made at test time), the committed photos and clips without codes,
what is said, and --find barcode on a clip."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
from codes import make_code
from conftest import REAL_MODEL, ROOT, read_events, run_cli, write_clip

from runtime.channels.barcode import BarcodeReader, Code, body, grouped, spoken

pytestmark = pytest.mark.unit

pytest.importorskip(
    "zxingcpp",
    reason="zxing-cpp not installed (pip install -c requirements/constraints.txt zxing-cpp)",
)


@pytest.fixture(scope="module")
def reader():
    return BarcodeReader()


@pytest.mark.system  # 60 codes rendered and read: about 2-3 s
def test_rendered_codes_in_photos_are_read_exactly_and_none_wrongly(reader):
    """60 codes (20 each of EAN-13, UPC-A and QR) with a tilt, blur and JPEG at 70, seeds
    300-359: the channel's `agree` rule was chosen on seeds 0-299, so these are held out."""
    right, wrong = 0, []
    for i in range(300, 360):
        code = make_code(i)
        found = reader.read(code.image)
        right += any(c.text == code.text for c in found)
        wrong += [(i, code.kind, code.text, c.text) for c in found if c.text != code.text]
    print(f"\nrendered codes read exactly: {right}/60, wrong: {len(wrong)}")
    assert right >= 54, right  # 90%
    assert not wrong, wrong


def test_a_code_is_placed_and_its_format_named(reader):
    code = make_code(301, kind="UPC-A", x=0.8)
    (found,) = reader.read(code.image)
    assert (found.format, found.text, found.where) == ("UPC-A", code.text, "right")
    x0, y0, x1, y1 = found.box
    bx0, by0, bx1, by1 = code.box  # inside the label pasted
    assert bx0 - 4 <= x0 < x1 <= bx1 + 4 and by0 - 4 <= y0 < y1 <= by1 + 4


@pytest.mark.system  # every frame of the committed clips: about 6 s
def test_no_code_is_read_in_the_committed_photos_and_clips(reader):
    frames = [cv2.imread(str(p)) for p in sorted((ROOT / "assets" / "photos").glob("*.jpg"))]
    for clip in ("sample_photos.mp4", "sample_scenes.mp4"):
        cap = cv2.VideoCapture(str(ROOT / "assets" / clip))
        ok, frame = cap.read()
        while ok:
            frames.append(frame)
            ok, frame = cap.read()
    assert len(frames) > 100
    false = [
        (i, [c.text for c in found]) for i, f in enumerate(frames) if (found := reader.read(f))
    ]
    assert not false, false


def test_digits_are_grouped_for_a_listener_and_links_said_by_their_site():
    assert grouped("4006381333931") == "4, 0 0 6, 3 8 1, 3 3 3, 9 3 1"
    assert grouped("036000291452") == "0 3 6, 0 0 0, 2 9 1, 4 5 2"
    assert grouped("96385074") == "9 6, 3 8 5, 0 7 4"
    box = (0, 0, 10, 10)
    ean = Code("EAN-13", "4006381333931", box, "ahead")
    qr = lambda text: Code("QR Code", text, box, "ahead")  # noqa: E731
    assert spoken([ean]) == "Barcode: 4, 0 0 6, 3 8 1, 3 3 3, 9 3 1"
    assert spoken([qr("https://www.example.org/menu?x=1")]) == "QR code: link to example.org"
    assert body(qr("www.example.com/a")) == "link to example.com"
    assert body(qr("WIFI:S:home net;T:WPA;P:secret;;")) == "Wi-Fi network home net"  # no password
    assert body(qr("line one\nline\x1b[31m two")) == "line one line [31m two"
    assert body(qr("x" * 300)).endswith("...") and len(body(qr("x" * 300))) == 103
    assert spoken([]) == ""


def test_a_frame_without_a_code_says_nothing_and_a_key_says_no_code():
    from runtime.channels.barcode import BarcodeChannel
    from runtime.channels.base import Context

    channel = BarcodeChannel(None)
    frame = cv2.imread(str(ROOT / "assets" / "photos" / "chelsea.jpg"))
    assert channel.run(frame, Context()).read == ""
    assert channel.run(frame, Context(everything=True)).read == "no code"
    found = channel.run(make_code(303, kind="EAN-13").image, Context())
    assert found.read.startswith("Barcode: ") and found.report["codes"][0]["format"] == "EAN-13"
    assert found.places == (("barcode", found.report["codes"][0]["where"]),)


@pytest.mark.system
def test_caption_json_reports_the_codes(tmp_path):
    code = make_code(302, kind="QR")
    path = tmp_path / "qr.jpg"
    cv2.imwrite(str(path), code.image)
    import json

    r = run_cli("runtime", "caption", str(path), "--json", "--channel", "barcode")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [c["text"] for c in out["codes"]] == [code.text]
    assert set(out["codes"][0]) == {"format", "text", "box", "where"}
    assert out["description"].endswith(
        f"QR code: {body(Code('QR Code', code.text, (0, 0, 1, 1), ''))}"
    )


@pytest.mark.system
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_find_barcode_says_closer_then_what_it_reads(tmp_path):
    """A product held far off on the left (its stripes seen, too small to read), then close:
    "barcode on your left, closer", then "barcode on your left, reads ..." once each."""
    from runtime.channels.barcode import grouped as digits

    near = make_code(304, kind="EAN-13", x=0.25)
    far = cv2.resize(cv2.imread(str(ROOT / "assets" / "photos" / "camera.jpg")), (640, 480))
    x0, y0, x1, y1 = near.box
    label = near.image[y0:y1, x0:x1]
    small = cv2.resize(label, ((x1 - x0) // 3, (y1 - y0) // 3), interpolation=cv2.INTER_AREA)
    far[200 : 200 + small.shape[0], 60 : 60 + small.shape[1]] = small
    assert not BarcodeReader().read(far) and BarcodeReader().glimpse(far) == "left"
    path = write_clip(tmp_path / "find.mp4", [far] * 20 + [near.image] * 20)
    log = tmp_path / "log.jsonl"
    r = run_cli(
        "runtime",
        "describe",
        str(path),
        "--find",
        "barcode",
        "--no-speak",
        "--log",
        str(log),
        "--model",
        str(REAL_MODEL),
    )
    assert r.returncode == 0, r.stderr
    said = [
        e["caption"] for e in read_events(log) if e["event"] == "spoken" and e["kind"] == "caption"
    ]
    assert said == [
        "barcode on your left, closer",
        f"barcode on your left, reads {digits(near.text)}",
    ], said


def test_without_zxing_cpp_doctor_says_how_to_get_it_and_without_opencv_barcode_no_closer(
    monkeypatch,
):
    import importlib.util

    from runtime.channels import barcode, registry

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "zxingcpp" else real(n, *a)
    )
    reason = registry.why_not("barcode", None)
    assert "zxing-cpp" in reason and "requirements/constraints.txt" in registry.hint("barcode")
    monkeypatch.undo()
    monkeypatch.delattr(barcode.cv2, "barcode")  # JetPack's older OpenCV has no barcode module
    assert BarcodeReader().glimpse(np.zeros((480, 640, 3), np.uint8)) is None
