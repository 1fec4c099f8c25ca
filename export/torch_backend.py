"""The torch model behind the runtime's `StepModel` interface, so evaluation, validation and
the benchmark's torch reference all run the same decode loop as the device."""

from __future__ import annotations

import numpy as np
import torch

from export.model import CaptionModel, EncoderGraph, ModelConfig, split_map
from runtime.errors import BundleError
from runtime.model import io_spec
from runtime.model.bundle import Bundle
from runtime.model.captioner import CaptionPipeline
from runtime.model.decoding import State, options_for


class TorchStepModel:
    """`int8_weights`: the head multiplies the last map by its weights as the int8 encoder
    rounds them (for int8 features, to see what the int8 bundle will say)."""

    def __init__(self, model: CaptionModel, int8_weights: bool = False):
        self.model, self.int8_weights = model.eval(), int8_weights
        self.encoder = EncoderGraph(self.model).eval()

    def _int8_rows(self, batch: int) -> torch.Tensor | None:
        return torch.ones(batch, dtype=torch.bool) if self.int8_weights else None

    @torch.inference_mode()
    def encode_features(self, fmap: np.ndarray) -> dict[str, np.ndarray]:
        """Region map (B,1395,7,7) -> encoder outputs by io_spec name."""
        outs = self.model.head(
            *split_map(torch.as_tensor(np.asarray(fmap, dtype=np.float32))),
            self._int8_rows(len(fmap)),
        )
        return {k: v.numpy() for k, v in zip(io_spec.ENCODER_OUTPUTS, outs)}

    @torch.inference_mode()
    def encode(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Preprocessed image (B,3,224,224) -> encoder outputs by io_spec name, the ImageNet
        logits of the objects channel included: what encoder.onnx computes."""
        outs = self.encoder(torch.as_tensor(image), self._int8_rows(len(image)))
        return {k: v.numpy() for k, v in zip((*io_spec.ENCODER_OUTPUTS, io_spec.OBJECTS), outs)}

    @torch.inference_mode()
    def step(self, token: np.ndarray, state: State):
        feeds = {**state, io_spec.TOKEN: token}
        args = [torch.as_tensor(feeds[k]) for k in io_spec.DECODER_INPUTS]
        logits, h, c, alpha = self.model.decoder.step(*args)
        nxt = dict(
            state,
            **{io_spec.STATE[k]: v.numpy() for k, v in ((io_spec.H_NEXT, h), (io_spec.C_NEXT, c))},
        )
        return logits.numpy(), nxt, alpha.numpy()


def weight_map(model: CaptionModel, graphs: dict) -> dict[str, list]:
    """graphs: {graph name: onnx.ModelProto}. Where each trainable parameter lives in them:
    {param: [graph, initializer, transposed]}, found by exact value."""
    from onnx import numpy_helper

    inits = [
        (g, t.name, numpy_helper.to_array(t))
        for g, m in graphs.items()
        for t in m.graph.initializer
    ]
    found = {}
    for name, p in model.trainable_state().items():
        a = p.numpy()
        for g, init, x in inits:
            if x.shape == a.shape and np.array_equal(x, a):
                found[name] = [g, init, False]
                break
            if a.ndim == 2 and x.shape == a.T.shape and np.array_equal(x, a.T):
                found[name] = [g, init, True]
                break
        else:
            raise RuntimeError(f"{name}: not found among the exported initializers")
    return found


def model_from_bundle(bundle: Bundle) -> CaptionModel:
    """The torch model of a bundle: the packaged ImageNet backbone plus the trained weights
    read back from its fp32 graphs (the manifest says where each parameter is)."""
    import onnx
    from onnx import numpy_helper

    m = bundle.manifest
    if "torch_weights" not in m or "model" not in m:
        raise BundleError(f"{bundle.root}: manifest has no torch_weights map (export it again)")
    if m.get("finetuned_backbone"):
        raise BundleError(
            f"{bundle.root}: its encoder was fine-tuned, so the packaged backbone is "
            "not its torch reference; load the training checkpoint instead"
        )
    paths = bundle.graph_paths("fp32")
    inits = {g: {t.name: t for t in onnx.load(str(p)).graph.initializer} for g, p in paths.items()}
    model = CaptionModel(ModelConfig(**m["model"]))
    state = {}
    for name, (graph, init, transposed) in m["torch_weights"].items():
        a = numpy_helper.to_array(inits[graph][init])
        state[name] = torch.from_numpy(np.array(a.T if transposed else a, order="C"))  # writable
    model.load_state_dict({**model.state_dict(), **state})
    return model.eval()


class TorchCaptioner(CaptionPipeline):
    """The runtime Captioner's pipeline on torch eager fp32: the benchmark's reference."""

    precision = "fp32"
    providers = ["torch-cpu"]

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.model = model_from_bundle(bundle)
        self.torch_model = TorchStepModel(self.model)
        self.step_model = self.torch_model  # what decode() steps through (the bench wraps it)
        self.options = options_for(bundle)  # the same rules as the ONNX rows

    def encode(self, blob: np.ndarray) -> dict[str, np.ndarray]:
        return self.torch_model.encode(blob)
