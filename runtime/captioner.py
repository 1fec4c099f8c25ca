"""Captioner: frame in, caption out, through the two ONNX graphs of a bundle.

    cap = Captioner(load_bundle("models/default"), "int8")
    result = cap.caption(cv2.imread("scene.png"))  # result.text, result.timings_ms
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from runtime import io_spec
from runtime.bundle import Bundle
from runtime.decoding import DecodingOptions, State, decode, initial_state
from runtime.errors import BundleError
from runtime.preprocess import preprocess
from runtime.session import SessionConfig, create_session


class OrtStepModel:
    """decoder_step.onnx behind the `StepModel` interface."""

    def __init__(self, session):
        self.session = session
        self.outputs = list(io_spec.DECODER_OUTPUTS)

    def step(self, token: np.ndarray, state: State):
        feeds = dict(state, token=token)
        logits, h, c, alpha = self.session.run(self.outputs, feeds)
        return logits, dict(state, h=h, c=c), alpha


@dataclass
class Caption:
    text: str
    tokens: list[int]
    steps: int
    alphas: np.ndarray  # (steps,49) attention per generated token
    timings_ms: dict[str, float]  # preprocess, encoder, decoder, total


def _check_io(session, spec: tuple[dict, dict], path) -> None:
    inputs, outputs = spec
    got_in = {i.name for i in session.get_inputs()}
    got_out = {o.name for o in session.get_outputs()}
    if got_in != set(inputs) or not set(outputs) <= got_out:
        raise BundleError(f"{path}: graph inputs {sorted(got_in)} / outputs {sorted(got_out)} "
                          f"do not match the SceneSpeak contract {sorted(inputs)} -> {sorted(outputs)}")


class CaptionPipeline:
    """preprocess -> encode once -> greedy decode, timed per stage. A backend sets `bundle`,
    `step_model` and `options` and provides `encode(blob)`."""

    bundle: Bundle
    step_model: object
    options: DecodingOptions

    def encode(self, blob: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def caption(self, frame: np.ndarray) -> Caption:
        """BGR frame of any size -> caption with per-stage timings."""
        t0 = time.perf_counter()
        blob = preprocess(frame, self.bundle.preprocess)
        t1 = time.perf_counter()
        state = initial_state(self.encode(blob))
        t2 = time.perf_counter()
        result = decode(self.step_model, state, self.options)
        t3 = time.perf_counter()
        tokens = [int(t) for t in result.tokens[0]]
        ms = {"preprocess": (t1 - t0) * 1e3, "encoder": (t2 - t1) * 1e3,
              "decoder": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3}
        return Caption(self.bundle.vocab.decode(tokens), tokens, result.steps, result.alphas[0], ms)


class Captioner(CaptionPipeline):
    """The two ONNX graphs of one precision of a bundle, in ONNX Runtime."""

    def __init__(self, bundle: Bundle, precision: str, session: SessionConfig = SessionConfig()):
        paths = bundle.graph_paths(precision)
        self.bundle, self.precision = bundle, precision
        self.encoder = create_session(paths[io_spec.ENCODER], session)
        self.decoder = create_session(paths[io_spec.DECODER], session)
        for graph, sess in ((io_spec.ENCODER, self.encoder), (io_spec.DECODER, self.decoder)):
            _check_io(sess, io_spec.SPECS[graph], paths[graph])
        vocab_out = self.decoder.get_outputs()[0].shape[-1]
        if isinstance(vocab_out, int) and vocab_out != len(bundle.vocab):
            raise BundleError(f"{paths[io_spec.DECODER]}: decoder has {vocab_out} outputs but the "
                              f"vocabulary has {len(bundle.vocab)} words")
        self.step_model = OrtStepModel(self.decoder)
        self.options = DecodingOptions(bundle.vocab.bos, bundle.vocab.eos, bundle.max_len)
        self.encoder_outputs = list(io_spec.ENCODER_OUTPUTS)

    @property
    def providers(self) -> list[str]:
        return self.encoder.get_providers()

    def encode(self, blob: np.ndarray) -> dict[str, np.ndarray]:
        """(B,3,224,224) -> encoder outputs by io_spec name."""
        return dict(zip(self.encoder_outputs, self.encoder.run(self.encoder_outputs, {"image": blob})))
