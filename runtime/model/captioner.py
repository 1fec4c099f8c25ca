"""Captioner: frame in, caption out, through the two ONNX graphs of a bundle.

cap = Captioner(load_bundle("models/default"), "int8")
result = cap.caption(cv2.imread("scene.png"))  # result.text, result.timings_ms
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from runtime.errors import BundleError, InputError
from runtime.model import io_spec
from runtime.model.bundle import Bundle
from runtime.model.confidence import calibrated
from runtime.model.decoding import (
    MAX_BEAM,
    DecodingOptions,
    State,
    StepModel,
    decode,
    degenerate,
    initial_state,
    options_for,
)
from runtime.model.preprocess import preprocess
from runtime.model.session import GPU_PROVIDERS, SessionConfig, create_session
from runtime.model.where import Locator, head_tensors, only
from runtime.model.wire import with_outputs


class OrtStepModel:
    """decoder_step.onnx behind the `StepModel` interface."""

    def __init__(self, session):
        self.session = session
        self.outputs = list(io_spec.DECODER_OUTPUTS)

    def step(self, token: np.ndarray, state: State):
        feeds = {**state, io_spec.TOKEN: token}
        got = dict(zip(self.outputs, self.session.run(self.outputs, feeds)))
        nxt = {io_spec.STATE[k]: got[k] for k in io_spec.STATE}
        return got[io_spec.LOGITS], dict(state, **nxt), got[io_spec.ALPHA]


class BoundStepModel:
    """decoder_step.onnx with IO binding: the regions and the LSTM state live on the session's
    device (the GPU under CUDA/TensorRT) from the first step on, and each step's h/c outputs
    are bound as the next step's inputs, so only the token goes in and the logits and
    attention (a few hundred floats) come back per token."""

    def __init__(self, session, device: str):
        self.session, self.device = session, device

    def _on_device(self, value):
        if isinstance(value, np.ndarray):
            return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value), self.device, 0)
        return value

    def step(self, token: np.ndarray, state: State):
        state = {k: self._on_device(v) for k, v in state.items()}
        io = self.session.io_binding()
        io.bind_cpu_input(io_spec.TOKEN, np.ascontiguousarray(token))
        for name, value in state.items():
            io.bind_ortvalue_input(name, value)
        for name in io_spec.DECODER_OUTPUTS:  # the state stays on the device, the rest comes back
            io.bind_output(name, self.device if name in io_spec.STATE else "cpu")
        self.session.run_with_iobinding(io)
        got = dict(zip(io_spec.DECODER_OUTPUTS, io.get_outputs()))
        nxt = {io_spec.STATE[k]: got[k] for k in io_spec.STATE}
        return got[io_spec.LOGITS].numpy(), dict(state, **nxt), got[io_spec.ALPHA].numpy()


@dataclass
class Caption:
    text: str
    tokens: list[int]
    steps: int
    alphas: np.ndarray  # (steps,49) attention per generated token
    timings_ms: dict[str, float]  # preprocess, encoder, decoder, total
    imagenet_logits: np.ndarray | None = None  # (1000,) when the encoder has the objects head
    confidence: float | None = None  # calibrated 0..1 (runtime.model.confidence), where the
    # bundle has it
    dropped: str | None = None  # why the decoded caption was dropped (text is then empty)
    logprob: float | None = None  # the decoder's mean token log-probability, eos included
    feature_map: np.ndarray | None = None  # (1280,7,7) the map the ImageNet head pools, where
    # the encoder gives it (runtime.model.where places the named objects with it)


ORT_TYPES = {"float32": "tensor(float)", "int64": "tensor(int64)"}


def _check_io(session, spec: tuple[dict, dict], path, bundle: Bundle) -> None:
    """The graph's inputs and outputs against the contract in io_spec: names, dtypes, ranks and
    the sizes the manifest gives (a graph from another model is refused before it runs)."""
    inputs, outputs = spec
    got_in = {i.name for i in session.get_inputs()}
    got_out = {o.name for o in session.get_outputs()}
    if got_in != set(inputs) or not set(outputs) <= got_out:
        raise BundleError(
            f"{path}: graph inputs {sorted(got_in)} / outputs {sorted(got_out)} "
            f"do not match the SceneSpeak contract {sorted(inputs)} -> {sorted(outputs)}"
        )
    model = bundle.manifest.get("model")
    if not isinstance(model, dict):
        model = {}
    sizes = {**io_spec.FIXED_AXES, **{k: v for k, v in model.items() if isinstance(v, int)}}
    size = bundle.preprocess.size
    for arg in session.get_inputs():
        dtype, axes = inputs[arg.name]
        if arg.name == io_spec.IMAGE:
            axes = ("batch", 3, size, size)
        want = tuple(sizes.get(a, a) for a in axes)
        ok = len(arg.shape) == len(want) and all(
            not isinstance(g, int) or not isinstance(w, int) or g == w
            for g, w in zip(arg.shape, want)
        )
        if not ok or arg.type != ORT_TYPES[dtype]:
            raise BundleError(
                f"{path}: input {arg.name!r} is {arg.type} {list(arg.shape)}, the "
                f"contract wants {ORT_TYPES[dtype]} {list(want)}"
            )


class CaptionPipeline:
    """preprocess -> encode once -> greedy decode, timed per stage. A backend sets `bundle`,
    `step_model` and `options` and provides `encode(blob)`."""

    bundle: Bundle
    step_model: StepModel
    options: DecodingOptions

    def encode(self, blob: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def caption(self, frame: np.ndarray) -> Caption:
        """BGR frame of any size -> caption with per-stage timings."""
        t0 = time.perf_counter()
        blob = preprocess(frame, self.bundle.preprocess)
        t1 = time.perf_counter()
        encoded = self.encode(blob)
        state = initial_state(encoded)
        t2 = time.perf_counter()
        result = decode(self.step_model, state, self.options)
        t3 = time.perf_counter()
        tokens = [int(t) for t in result.tokens[0]]
        ms = {
            "preprocess": (t1 - t0) * 1e3,
            "encoder": (t2 - t1) * 1e3,
            "decoder": (t3 - t2) * 1e3,
            "total": (t3 - t0) * 1e3,
        }
        logits = encoded.get(io_spec.OBJECTS)
        map_output: str | None = getattr(self, "map_output", None)
        fmap = None if map_output is None else encoded.get(map_output)
        text = self.bundle.vocab.decode(tokens)
        logprob = None if result.logprob is None else float(result.logprob[0])
        confidence = calibrated(logprob, self.bundle.confidence)
        dropped = (
            degenerate(text, self.bundle.decoding.get("dangling", ()))
            if self.bundle.decoding
            else None
        )
        if dropped:
            text, confidence = "", None
        return Caption(
            text,
            tokens,
            result.steps,
            result.alphas[0],
            ms,
            None if logits is None else np.asarray(logits)[0],
            confidence,
            dropped,
            logprob,
            None if fmap is None else np.asarray(fmap)[0],
        )


class Captioner(CaptionPipeline):
    """The two ONNX graphs of one precision of a bundle, in ONNX Runtime."""

    def __init__(
        self,
        bundle: Bundle,
        precision: str,
        session: SessionConfig = SessionConfig(),
        beam_size: int = 1,
    ):
        if not 1 <= beam_size <= MAX_BEAM:
            raise InputError(f"beam size {beam_size}: use 1 (greedy) to {MAX_BEAM} beams")
        paths = bundle.graph_paths(precision)
        self.bundle, self.precision = bundle, precision
        cache = next(
            (
                Path(o["trt_engine_cache_path"])
                for n, o in session.providers
                if "trt_engine_cache_path" in o
            ),
            None,
        )
        before = set(cache.iterdir()) if cache and cache.is_dir() else set()
        if cache:
            cache.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        self.encoder, self.locator, self.map_output = self._encoder(paths[io_spec.ENCODER], session)
        # one thread for the decoder step: its ops are a few small matrices, and a second pool
        # spinning beside the encoder's would take the cores from it (see auto_threads)
        self.decoder = create_session(paths[io_spec.DECODER], replace(session, intra_op_threads=1))
        for graph, sess in ((io_spec.ENCODER, self.encoder), (io_spec.DECODER, self.decoder)):
            _check_io(sess, io_spec.REQUIRED[graph], paths[graph], bundle)
        vocab_out = self.decoder.get_outputs()[0].shape[-1]
        if isinstance(vocab_out, int) and vocab_out != len(bundle.vocab):
            raise BundleError(
                f"{paths[io_spec.DECODER]}: decoder has {vocab_out} outputs but the "
                f"vocabulary has {len(bundle.vocab)} words"
            )
        bind = session.io_binding == "on" or (
            session.io_binding == "auto" and self.providers[0] in GPU_PROVIDERS
        )
        device = "cuda" if self.providers[0] in GPU_PROVIDERS else "cpu"
        self.step_model = (
            BoundStepModel(self.decoder, device) if bind else OrtStepModel(self.decoder)
        )
        self.options = options_for(bundle, beam_size)
        self.has_objects = io_spec.OBJECTS in {o.name for o in self.encoder.get_outputs()}
        self.encoder_outputs = (
            list(io_spec.ENCODER_OUTPUTS)
            + [io_spec.OBJECTS] * self.has_objects
            + [self.map_output] * (self.map_output is not None)
        )
        # TensorRT builds its engines at the first run for each shape: warm up here so that the
        # first caption is not the slow one, and report how long it took
        self.caption(np.zeros((bundle.preprocess.size, bundle.preprocess.size, 3), np.uint8))
        built = set(cache.iterdir()) - before if cache else set()
        self.startup = {
            "providers": self.providers,
            "io_binding": bind,
            "ready_s": round(time.perf_counter() - t0, 3),
            "engine_cache": str(cache) if cache else None,
            "engines_built": len(built),
        }

    def _encoder(self, path: Path, session: SessionConfig):
        """The encoder session, with the map its ImageNet head pools as one more output and a
        Locator for it (runtime.model.where), where the graph has the head; else
        (session, None, None)."""
        model = path.read_bytes()
        found = head_tensors(model)
        if found is None:
            return create_session(path, session), None, None
        fmap, weight = found
        probe = create_session(path, replace(session, intra_op_threads=1), only(model, weight))
        size = self.bundle.preprocess.size
        w = probe.run(None, {io_spec.IMAGE: np.zeros((1, 3, size, size), np.float32)})[0]
        try:
            names = self.bundle.object_names()
        except BundleError:
            names = None
        locator = Locator(w, names) if names is not None and len(names) == len(w) else None
        return create_session(path, session, with_outputs(model, [fmap])), locator, fmap

    @property
    def providers(self) -> list[str]:
        return self.encoder.get_providers()

    def encode(self, blob: np.ndarray) -> dict[str, np.ndarray]:
        """(B,3,224,224) -> encoder outputs by io_spec name."""
        return dict(
            zip(self.encoder_outputs, self.encoder.run(self.encoder_outputs, {io_spec.IMAGE: blob}))
        )
