"""The text channel: signs, labels and pages read aloud, with RapidOCR (PP-OCRv6 detection and
recognition, ONNX models shipped in the `rapidocr` wheel, Apache-2.0) on ONNX Runtime.

    reader = TextReader()
    lines = reader.read(frame)  # [TextLine("EMERGENCY EXIT", 0.999, (163, 215, 457, 250), "ahead")]
    spoken(lines)               # "Sign: EMERGENCY EXIT"

As a channel (TextChannel) it is slow: it reads once per new scene, in the describe loop's
background worker, and manual mode's "t" reads every line of the frame at once.

Nothing is ever fetched: every model path is pinned to the wheel's own files, so RapidOCR's
downloader is never reached (a test runs it with the network blocked). Lines are read in
reading order, top to bottom and left to right; a line scored below `min_score`, or of one
character, is not read.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime.channels.base import Context, Findings, Setup
from runtime.channels.places import third
from runtime.errors import InputError
from runtime.model.session import MAX_THREADS, cache_root
from runtime.options import check, number

HINT = "pip install -c requirements/constraints.txt rapidocr"


@dataclass(frozen=True)
class TextConfig:
    min_score: float = 0.88  # a line the recogniser scores below this is not read, chosen on
    # the 60 rendered signs of tests/signs.py: right reads scored 0.91 and up, stray marks
    # read in the photos around them 0.39-0.85 (0.94 and up against 0.42-0.66 at side 480)
    max_lines: int = 3  # brief: a longer text reads its first lines, then "more text"
    side: int = 480  # the detector's input: a frame's longest side is scaled down to this (480
    # reads the 60 signs of tests/signs.py as well as 640 did, 59/60, in 205 against 324 ms)
    threads: int = 1  # ONNX Runtime threads of the text models; it runs beside the encoder

    def __post_init__(self):
        check(self, "min_score", number(self.min_score) and 0 <= self.min_score <= 1, "use 0..1")
        check(
            self,
            "max_lines",
            number(self.max_lines, int) and self.max_lines >= 1,
            "use 1 or more lines",
        )
        check(
            self,
            "side",
            number(self.side, int) and 160 <= self.side <= 2048,
            "use 160..2048 pixels",
        )
        check(
            self,
            "threads",
            number(self.threads, int) and 0 <= self.threads <= MAX_THREADS,
            f"use 0..{MAX_THREADS}",
        )


@dataclass(frozen=True)
class TextLine:
    text: str
    score: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels
    where: str  # left | ahead | right, from the box's centre (runtime.channels.places.third)

    def as_json(self) -> dict:
        return {
            "text": self.text,
            "score": round(self.score, 4),
            "box": list(self.box),
            "where": self.where,
        }


def reading_order(lines: list[TextLine]) -> list[TextLine]:
    """Top to bottom; lines whose boxes overlap vertically by half the smaller height are one
    row, read left to right."""
    rows: list[list[TextLine]] = []
    for line in sorted(lines, key=lambda l: (l.box[1] + l.box[3]) / 2):
        if rows:
            last = rows[-1][-1]
            overlap = min(last.box[3], line.box[3]) - max(last.box[1], line.box[1])
            if overlap >= 0.5 * min(last.box[3] - last.box[1], line.box[3] - line.box[1]):
                rows[-1].append(line)
                continue
        rows.append([line])
    return [l for row in rows for l in sorted(row, key=lambda l: l.box[0])]


def spoken(lines: list[TextLine], max_lines: int = 3) -> str:
    """'Sign: EMERGENCY EXIT' for one or two lines; 'Text: first. second. third. more text' for
    a page; '' when nothing was read."""
    if not lines:
        return ""
    said = ". ".join(l.text for l in lines[:max_lines])
    head = "Sign" if len(lines) <= 2 else "Text"
    return f"{head}: {said}" + (". more text" if len(lines) > max_lines else "")


def words(lines: list[TextLine]) -> tuple[tuple[str, str], ...]:
    """(word, where) of every word read, lower-cased: what find mode looks for in text."""
    return tuple((w.lower(), l.where) for l in lines for w in l.text.split())


def engine_for(providers: tuple[str, ...]) -> str:
    """Which RapidOCR engine runs the text models on the device profile's providers: its
    TensorRT engine where the profile wants TensorRT and the `tensorrt` and `cuda-python`
    packages are there (JetPack's), else ONNX Runtime (with CUDA where offered)."""
    import importlib.util

    if "TensorrtExecutionProvider" in providers and all(
        importlib.util.find_spec(m) is not None for m in ("tensorrt", "cuda")
    ):
        return "tensorrt"
    return "onnxruntime"


class TextReader:
    """RapidOCR with its wheel's models, on the device profile's providers (engine_for)."""

    def __init__(self, cfg: TextConfig = TextConfig(), providers: tuple[str, ...] = ()):
        try:
            import rapidocr
            from rapidocr import RapidOCR
        except ImportError as e:
            raise InputError(
                f"the text channel needs rapidocr ({e}); "
                "pip install -c requirements/constraints.txt rapidocr"
            ) from None
        models = Path(rapidocr.__file__).resolve().parent / "models"
        det, rec = models / "PP-OCRv6_det_small.onnx", models / "PP-OCRv6_rec_small.onnx"
        for path in (det, rec):
            if not path.is_file():
                raise InputError(
                    f"{path}: the rapidocr wheel lacks its model; reinstall rapidocr==3.10.0"
                )
        self.cfg = cfg
        self.engine_type = engine_for(providers)
        trt = (
            {
                "Det.engine_type": "tensorrt",
                "Rec.engine_type": "tensorrt",
                "EngineConfig.tensorrt.cache_dir": str(_engine_cache()),
            }
            if self.engine_type == "tensorrt"
            else {}
        )
        with _no_memory_patterns():  # its sessions are made here and at the first run
            self.engine = self._build(RapidOCR, trt, models, det, rec, cfg, providers)
            # the first run is the slow one; a line of text in it makes the recogniser load too
            self.engine(
                cv2.putText(
                    np.full((64, 320, 3), 255, np.uint8),
                    "SCENESPEAK",
                    (10, 44),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    1.2,
                    (0, 0, 0),
                    3,
                )
            )

    @staticmethod
    def _build(RapidOCR, trt, models, det, rec, cfg, providers):
        return RapidOCR(
            params={
                **trt,
                "Global.log_level": "error",
                "Global.use_cls": False,
                "Global.text_score": 0.0,
                "Global.model_root_dir": str(models),
                "Global.font_path": None,
                "Det.model_path": str(det),
                "Rec.model_path": str(rec),
                "Det.limit_type": "max",
                "Det.limit_side_len": cfg.side,
                "EngineConfig.onnxruntime.intra_op_num_threads": cfg.threads or -1,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                "EngineConfig.onnxruntime.use_cuda": "CUDAExecutionProvider" in providers,
            }
        )

    def read(self, frame: np.ndarray, everything: bool = False) -> list[TextLine]:
        """BGR frame -> its lines in reading order (all of them with `everything`, else those
        scored at least min_score)."""
        width = frame.shape[1]  # places are thirds of the frame as it came, not as padded
        frame = padded(frame)
        out = self.engine(frame)
        if out.boxes is None or out.txts is None:
            return []
        lines = []
        for quad, text, score in zip(out.boxes, out.txts, out.scores):
            text = " ".join(str(text).split())
            if len(text) < 2 or (not everything and score < self.cfg.min_score):
                continue  # a lone character is a stray mark far more often than a sign
            q = np.asarray(quad, dtype=np.float64)
            box = (int(q[:, 0].min()), int(q[:, 1].min()), int(q[:, 0].max()), int(q[:, 1].max()))
            lines.append(TextLine(text, float(score), box, third(box[0], box[2], width)))
        return reading_order(lines)


def padded(frame: np.ndarray, most: float = 8.0, least: int = 32) -> np.ndarray:
    """The frame padded at its right or bottom (boxes keep their coordinates) to at most `most`
    times as long as it is wide, and `least` pixels a side: the detector scales the longest
    side to `side`, and a 3000x20 banner would shrink to nothing (RapidOCR fails on it)."""
    h, w = frame.shape[:2]
    height, width = max(h, least, int(np.ceil(w / most))), max(w, least, int(np.ceil(h / most)))
    if (height, width) == (h, w):
        return frame
    fill = int(np.median(frame)) if frame.size else 255  # the banner's own background, roughly
    return cv2.copyMakeBorder(
        frame, 0, height - h, 0, width - w, cv2.BORDER_CONSTANT, value=(fill,) * 3
    )


@contextlib.contextmanager
def _no_memory_patterns():
    """RapidOCR's ONNX Runtime sessions built without memory patterns. ONNX Runtime keeps one
    per input shape, and the text models see a new shape with nearly every frame: with them
    the text channel grew by 180 MB over 60 signs and stayed there, without them by about
    100 MB, at the same speed (p50 128 ms either way). RapidOCR has no setting for it, so its
    session options are amended while the reader is built (rapidocr==3.10.0's own function;
    where it is not there, nothing changes)."""
    try:
        from rapidocr.inference_engine.onnxruntime import main as ort_engine

        session: Any = ort_engine.OrtInferSession  # Any: its method is patched below
        options = session._init_sess_opts
    except (ImportError, AttributeError):
        yield
        return

    def without_patterns(cfg):
        so = options(cfg)
        so.enable_mem_pattern = False
        return so

    session._init_sess_opts = staticmethod(without_patterns)
    try:
        yield
    finally:
        session._init_sess_opts = staticmethod(options)


def _engine_cache() -> Path:
    """Where TensorRT keeps the text models' engines: beside the captioner's (cache_root())."""
    return cache_root() / "text"


class TextChannel:
    """Signs, labels and pages, read once per scene (slow); "t" reads every line."""

    name, slow, key = "text", True, "t"
    finds = True  # find mode looks in its places (or words)

    def __init__(self, setup: Setup):
        providers = tuple(n for n, _ in setup.session.providers) if setup.session else ()
        # every core: it runs once per new scene, beside the captioner
        self.reader = TextReader(TextConfig(threads=0), providers)
        self.max_lines = 20 if setup.verbosity == "full" else self.reader.cfg.max_lines

    def run(self, frame: np.ndarray, context: Context) -> Findings:
        lines = self.reader.read(frame)
        read = spoken(lines, 1000 if context.everything else self.max_lines)
        if context.everything and not read:
            read = "no text"
        return Findings(
            self.name,
            read=read,
            words=words(lines),
            key=(read,),
            report={"text": [l.as_json() for l in lines]},
            value=lines,
        )


def usable(setup: Setup) -> str | None:
    import importlib.util

    return (
        None
        if importlib.util.find_spec("rapidocr")
        else "the text channel needs rapidocr; pip install -c requirements/constraints.txt rapidocr"
    )
