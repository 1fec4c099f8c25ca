"""The text channel: signs, labels and pages read aloud, with RapidOCR (PP-OCRv6 detection and
recognition, ONNX models shipped in the `rapidocr` wheel, Apache-2.0) on ONNX Runtime.

    reader = TextReader()
    lines = reader.read(frame)            # [TextLine("EMERGENCY EXIT", 0.999, (163, 215, 457, 250), "ahead")]
    spoken(lines)                         # "Sign: EMERGENCY EXIT"

Nothing is ever fetched: every model path is pinned to the wheel's own files, so RapidOCR's
downloader is never reached (a test runs it with the network blocked). Lines are read in
reading order, top to bottom and left to right; a line scored below `min_score`, or of one
character, is not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.errors import InputError
from runtime.model.session import MAX_THREADS, cache_root
from runtime.model.where import third
from runtime.options import check, number


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
        check(self, "max_lines", number(self.max_lines, int) and self.max_lines >= 1, "use 1 or more lines")
        check(self, "side", number(self.side, int) and 160 <= self.side <= 2048, "use 160..2048 pixels")
        check(self, "threads", number(self.threads, int) and 0 <= self.threads <= MAX_THREADS,
              f"use 0..{MAX_THREADS}")


@dataclass(frozen=True)
class TextLine:
    text: str
    score: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels
    where: str  # left | ahead | right, from the box's centre (runtime.model.where.third)

    def as_json(self) -> dict:
        return {"text": self.text, "score": round(self.score, 4), "box": list(self.box),
                "where": self.where}


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


def engine_for(providers: tuple[str, ...]) -> str:
    """Which RapidOCR engine runs the text models on the device profile's providers: its
    TensorRT engine where the profile wants TensorRT and the `tensorrt` and `cuda-python`
    packages are there (JetPack's), else ONNX Runtime (with CUDA where offered)."""
    import importlib.util

    if "TensorrtExecutionProvider" in providers and all(
            importlib.util.find_spec(m) is not None for m in ("tensorrt", "cuda")):
        return "tensorrt"
    return "onnxruntime"


class TextReader:
    """RapidOCR with its wheel's models, on the device profile's providers (engine_for)."""

    def __init__(self, cfg: TextConfig = TextConfig(), providers: tuple[str, ...] = ()):
        try:
            import rapidocr
            from rapidocr import RapidOCR
        except ImportError as e:
            raise InputError(f"the text channel needs rapidocr ({e}); "
                             "pip install -r requirements/runtime.txt") from None
        models = Path(rapidocr.__file__).resolve().parent / "models"
        det, rec = models / "PP-OCRv6_det_small.onnx", models / "PP-OCRv6_rec_small.onnx"
        for path in (det, rec):
            if not path.is_file():
                raise InputError(f"{path}: the rapidocr wheel lacks its model; reinstall rapidocr==3.10.0")
        self.cfg = cfg
        self.engine_type = engine_for(providers)
        trt = {"Det.engine_type": "tensorrt", "Rec.engine_type": "tensorrt",
               "EngineConfig.tensorrt.cache_dir": str(_engine_cache())} if self.engine_type == "tensorrt" else {}
        self.engine = RapidOCR(params={**trt,
            "Global.log_level": "error", "Global.use_cls": False, "Global.text_score": 0.0,
            "Global.model_root_dir": str(models), "Global.font_path": None,
            "Det.model_path": str(det), "Rec.model_path": str(rec),
            "Det.limit_type": "max", "Det.limit_side_len": cfg.side,
            "EngineConfig.onnxruntime.intra_op_num_threads": cfg.threads or -1,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            "EngineConfig.onnxruntime.use_cuda": "CUDAExecutionProvider" in providers,
        })
        self.engine(np.full((64, 256, 3), 255, np.uint8))  # the first run is the slow one

    def read(self, frame: np.ndarray, everything: bool = False) -> list[TextLine]:
        """BGR frame -> its lines in reading order (all of them with `everything`, else those
        scored at least min_score)."""
        out = self.engine(frame)
        if out.boxes is None or out.txts is None:
            return []
        width = frame.shape[1]
        lines = []
        for quad, text, score in zip(out.boxes, out.txts, out.scores):
            text = " ".join(str(text).split())
            if len(text) < 2 or (not everything and score < self.cfg.min_score):
                continue  # a lone character is a stray mark far more often than a sign
            q = np.asarray(quad, dtype=np.float64)
            box = (int(q[:, 0].min()), int(q[:, 1].min()), int(q[:, 0].max()), int(q[:, 1].max()))
            lines.append(TextLine(text, float(score), box, third(box[0], box[2], width)))
        return reading_order(lines)


def _engine_cache() -> Path:
    """Where TensorRT keeps the text models' engines: beside the captioner's (cache_root())."""
    return cache_root() / "text"


class TextWorker:
    """Reads text off frames in its own thread, so that capture and captioning never wait for
    it: `submit()` replaces a frame still waiting, and `result_since(i)` gives the lines of the
    newest frame read whose index is at least i (None while none is)."""

    def __init__(self, reader: TextReader, on_error=lambda message: None):
        import threading

        self.reader, self.on_error = reader, on_error
        self._cond = threading.Condition()
        self._job: tuple[np.ndarray, int] | None = None
        self._done: tuple[int, list[TextLine], float] = (-1, [], 0.0)
        self._stop = False
        self._busy = False
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="text", daemon=True)
        self._thread.start()

    def submit(self, image: np.ndarray, index: int, if_idle: bool = False) -> bool:
        """Read this frame next (replacing one still waiting); with `if_idle`, only when
        nothing is being read or waiting. Whether it was taken."""
        with self._cond:
            if if_idle and (self._job is not None or self._busy):
                return False
            self._job = (image, index)
            self._cond.notify()
            return True

    def result_since(self, index: int) -> tuple[list[TextLine], float] | None:
        """(lines, ms the read took) of the newest frame read with an index >= `index`."""
        with self._cond:
            i, lines, ms = self._done
            return (lines, ms) if i >= index else None

    def _run(self) -> None:
        import time

        while True:
            with self._cond:
                while self._job is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                (image, index), self._job = self._job, None
                self._busy = True
            t0 = time.perf_counter()
            try:
                lines = self.reader.read(image)
            except Exception as e:  # one bad frame never ends the channel
                lines = []
                if not self._failed:
                    self._failed = True
                    self.on_error(f"text channel failed on a frame ({type(e).__name__}: {e})")
            with self._cond:
                self._done = (index, lines, (time.perf_counter() - t0) * 1e3)
                self._busy = False

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(5)
