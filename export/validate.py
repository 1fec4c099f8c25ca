"""Check every exported graph against torch, at an explicit tolerance per precision.

Graph outputs (the objects head's ImageNet logits included) are compared with torch on real
scene images and on decoder states reached by real decoding: fp32 with `np.allclose` (logits
at atol 1e-4), fp16 and int8 by relative RMS and worst-case error (see `Tolerance`; the
tolerances are part of the ONNX contract, runtime.model.io_spec). Greedy captions of the whole
pipeline must also agree with torch on a minimum share of images. Any miss raises
`ValidationError`.
"""

from __future__ import annotations

import numpy as np

from export.torch_backend import TorchStepModel
from runtime.errors import SceneSpeakError
from runtime.model import io_spec
from runtime.model.bundle import Bundle
from runtime.model.captioner import Captioner
from runtime.model.decoding import decode, initial_state
from runtime.model.io_spec import CAPTION_AGREEMENT, TOLERANCES, Tolerance


class ValidationError(SceneSpeakError):
    """An exported graph misses torch: `python -m export onnx` prints it as one line, exit 2."""


def _tolerance(tol: dict[str, Tolerance], graph: str, output: str) -> Tolerance:
    return tol.get(f"{graph}.{output}", tol[graph])


def _compare(name: str, got: np.ndarray, ref: np.ndarray, tol: Tolerance) -> float:
    """Raises ValidationError on a miss; returns the error measured (max abs, or relative RMS)."""
    if tol.rms is None:
        err = float(np.abs(got - ref).max())
        if not np.allclose(got, ref, rtol=tol.rtol, atol=tol.atol):
            raise ValidationError(
                f"{name}: max error {err:.3g} exceeds rtol={tol.rtol} atol={tol.atol}"
            )
        return err
    rms = float(np.linalg.norm(got - ref) / (np.linalg.norm(ref) or 1.0))
    worst = float(np.abs(got - ref).max() / (np.abs(ref).max() or 1.0))
    if rms > tol.rms or worst > tol.max_rel:
        raise ValidationError(
            f"{name}: relative RMS error {rms:.3g} (limit {tol.rms}), max error "
            f"{worst:.3g} of range (limit {tol.max_rel})"
        )
    return rms


def validate(
    bundle: Bundle,
    torch_model: TorchStepModel,
    images: np.ndarray,
    precision: str,
    min_agreement: float | None = None,
) -> dict:
    """images: preprocessed (N,3,224,224). Returns the measured errors and caption agreement.
    min_agreement overrides CAPTION_AGREEMENT for fp16/int8 (fp32 must always agree fully)."""
    tol = TOLERANCES[precision]
    cap = Captioner(bundle, precision)
    report: dict[str, float] = {}
    ref_enc = torch_model.encode(images)
    got_enc = cap.encode(images)
    for k in list(io_spec.ENCODER_OUTPUTS) + [io_spec.OBJECTS] * cap.has_objects:
        report[f"{io_spec.ENCODER}.{k}"] = _compare(
            f"{precision} {io_spec.ENCODER} {k}",
            got_enc[k],
            ref_enc[k],
            _tolerance(tol, io_spec.ENCODER, k),
        )
    # decoder steps from the states torch reaches while captioning these images
    state = initial_state(ref_enc)
    token = np.full(len(images), bundle.vocab.bos, dtype=np.int64)
    for t in range(4):
        ref_logits, ref_next, ref_alpha = torch_model.step(token, state)
        logits, nxt, alpha = cap.step_model.step(token, state)
        got = {
            io_spec.LOGITS: logits,
            io_spec.ALPHA: alpha,
            **{k: nxt[v] for k, v in io_spec.STATE.items()},
        }
        ref = {
            io_spec.LOGITS: ref_logits,
            io_spec.ALPHA: ref_alpha,
            **{k: ref_next[v] for k, v in io_spec.STATE.items()},
        }
        for k in io_spec.DECODER_OUTPUTS:
            err = _compare(
                f"{precision} {io_spec.DECODER} {k} (step {t})",
                got[k],
                ref[k],
                _tolerance(tol, io_spec.DECODER, k),
            )
            key = f"{io_spec.DECODER}.{k}"
            report[key] = max(err, report.get(key, 0.0))
        state, token = ref_next, ref_logits.argmax(axis=1)
    # whole pipeline: greedy captions through ORT against torch
    ref_tokens = decode(torch_model, initial_state(ref_enc), cap.options).tokens
    got_tokens = decode(cap.step_model, initial_state(got_enc), cap.options).tokens
    same = [
        bundle.vocab.decode(a) == bundle.vocab.decode(b) for a, b in zip(got_tokens, ref_tokens)
    ]
    report["caption_agreement"] = float(np.mean(same))
    need = CAPTION_AGREEMENT[precision]
    if min_agreement is not None and precision != "fp32":
        need = min_agreement
    if report["caption_agreement"] < need:
        raise ValidationError(
            f"{precision}: greedy captions agree with torch on "
            f"{report['caption_agreement']:.1%} of images, need {need:.0%}"
        )
    return report
