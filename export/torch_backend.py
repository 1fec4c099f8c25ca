"""The torch model behind the runtime's `StepModel` interface, so evaluation, validation and
the benchmark's torch reference all run the same decode loop as the device."""

from __future__ import annotations

import numpy as np
import torch

from export.model import CaptionModel
from runtime import io_spec
from runtime.decoding import State


class TorchStepModel:
    def __init__(self, model: CaptionModel):
        self.model = model.eval()

    @torch.inference_mode()
    def encode_features(self, fmap: np.ndarray) -> dict[str, np.ndarray]:
        """Region map (B,1395,7,7) -> encoder outputs by io_spec name."""
        outs = self.model.head(torch.as_tensor(np.asarray(fmap, dtype=np.float32)))
        return {k: v.numpy() for k, v in zip(io_spec.ENCODER_OUTPUTS, outs)}

    @torch.inference_mode()
    def encode(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Preprocessed image (B,3,224,224) -> encoder outputs by io_spec name."""
        fmap = self.model.backbone.region_features(torch.as_tensor(image))
        return self.encode_features(fmap.numpy())

    @torch.inference_mode()
    def step(self, token: np.ndarray, state: State):
        args = [torch.as_tensor(token if k == "token" else state[k]) for k in io_spec.DECODER_INPUTS]
        logits, h, c, alpha = self.model.decoder.step(*args)
        nxt = dict(state, **{io_spec.STATE[k]: v.numpy() for k, v in (("h_next", h), ("c_next", c))})
        return logits.numpy(), nxt, alpha.numpy()
