"""Check every exported graph against torch, at an explicit tolerance per precision.

Graph outputs are compared with `np.allclose(ort, torch, rtol, atol)` on real scene inputs and
on decoder states reached by real decoding; greedy captions of the whole pipeline must also
agree with torch on a minimum share of images. Any miss raises `ValidationError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from export.torch_backend import TorchStepModel
from runtime import io_spec
from runtime.bundle import Bundle
from runtime.captioner import Captioner
from runtime.decoding import decode, initial_state


class ValidationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    scaled: bool  # compare after dividing by the tensor's largest torch magnitude


# fp16 and int8 errors are relative to a tensor's range (rounding and quantisation steps
# scale with it), so those outputs are compared after scaling.
TOLERANCES = {
    "fp32": {"encoder": Tolerance(1e-3, 1e-4, False), "decoder_step": Tolerance(0.0, 1e-4, False)},
    "fp16": {"encoder": Tolerance(0.0, 2e-2, True), "decoder_step": Tolerance(0.0, 1e-2, True)},
    "int8": {"encoder": Tolerance(0.0, 0.15, True), "decoder_step": Tolerance(0.0, 0.05, True)},
}
CAPTION_AGREEMENT = {"fp32": 1.0, "fp16": 0.97, "int8": 0.97}  # least share equal to torch's


def _compare(name: str, got: np.ndarray, ref: np.ndarray, tol: Tolerance) -> float:
    scale = (float(np.abs(ref).max()) or 1.0) if tol.scaled else 1.0
    err = float(np.abs(got - ref).max()) / scale
    if not np.allclose(got / scale, ref / scale, rtol=tol.rtol, atol=tol.atol):
        raise ValidationError(f"{name}: max {'relative ' if tol.scaled else ''}error {err:.3g} "
                              f"exceeds rtol={tol.rtol} atol={tol.atol}")
    return err


def validate(bundle: Bundle, torch_model: TorchStepModel, images: np.ndarray,
             precision: str) -> dict:
    """images: preprocessed (N,3,224,224). Returns the measured errors and caption agreement."""
    tol = TOLERANCES[precision]
    cap = Captioner(bundle, precision)
    report: dict[str, float] = {}
    ref_enc = torch_model.encode(images)
    got_enc = cap.encode(images)
    for k in io_spec.ENCODER_OUTPUTS:
        report[f"encoder.{k}"] = _compare(f"{precision} encoder {k}", got_enc[k], ref_enc[k],
                                          tol["encoder"])
    # decoder steps from the states torch reaches while captioning these images
    state = initial_state(ref_enc)
    token = np.full(len(images), bundle.vocab.bos, dtype=np.int64)
    for t in range(4):
        ref_logits, ref_next, ref_alpha = torch_model.step(token, state)
        logits, nxt, alpha = cap.step_model.step(token, state)
        for k, got, ref in (("logits", logits, ref_logits), ("h_next", nxt["h"], ref_next["h"]),
                            ("c_next", nxt["c"], ref_next["c"]), ("alpha", alpha, ref_alpha)):
            err = _compare(f"{precision} decoder_step {k} (step {t})", got, ref,
                           tol["decoder_step"])
            report[f"decoder_step.{k}"] = max(err, report.get(f"decoder_step.{k}", 0.0))
        state, token = ref_next, ref_logits.argmax(axis=1)
    # whole pipeline: greedy captions through ORT against torch
    ref_tokens = decode(torch_model, initial_state(ref_enc), cap.options).tokens
    got_tokens = decode(cap.step_model, initial_state(got_enc), cap.options).tokens
    same = [bundle.vocab.decode(a) == bundle.vocab.decode(b) for a, b in zip(got_tokens, ref_tokens)]
    report["caption_agreement"] = float(np.mean(same))
    need = CAPTION_AGREEMENT[precision]
    if report["caption_agreement"] < need:
        raise ValidationError(f"{precision}: greedy captions agree with torch on "
                              f"{report['caption_agreement']:.1%} of images, need {need:.0%}")
    return report
