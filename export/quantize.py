"""fp16 and int8 versions of the fp32 graphs.

fp16: every weight and op in half precision, inputs and outputs kept fp32 (for GPUs/Jetson;
      slower than fp32 on ONNX Runtime's CPU provider).
int8: encoder as static QDQ (U8 activations, S8 per-channel weights) calibrated on real
      images, which is what VNNI CPUs and TensorRT run fast; the decoder step as dynamic int8,
      since its activations depend on the state and change every token.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_dynamic, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxruntime.transformers.float16 import convert_float_to_float16

from runtime import io_spec


def to_fp16(src: Path, dst: Path) -> None:
    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))


class ImageCalibration(CalibrationDataReader):
    """Feeds preprocessed calibration images (N,3,224,224) to the encoder one at a time."""

    def __init__(self, images: np.ndarray):
        self.images = images
        self.i = 0

    def get_next(self) -> dict | None:
        if self.i >= len(self.images):
            return None
        self.i += 1
        return {"image": self.images[self.i - 1: self.i]}

    def rewind(self) -> None:
        self.i = 0


# Ops kept in float. The stem and blocks 0-2 (112x112 and 56x56, a fifth of the MACs) hold the
# channels whose ranges differ most within one tensor: in int8 they alone put ~20% RMS error
# on the last map; in float it drops to ~10%. After the backbone, the region taps (see
# export.model.RegionTaps) and the head are a few MFLOPs, and one shared Concat scale would
# erase the mean-colour channels.
FLOAT_SCOPES = ("/_conv_stem/", "/_blocks.0/", "/_blocks.1/", "/_blocks.2/", "/_taps/", "/head/")


def encoder_to_int8(src: Path, dst: Path, calibration: np.ndarray) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared))
        keep_float = [n.name for n in onnx.load(str(prepared)).graph.node
                      if n.name.startswith(FLOAT_SCOPES)]
        if not any(n.startswith("/_blocks.0/") for n in keep_float):
            raise RuntimeError(f"{src}: no nodes under /_blocks.0/; the graph's names changed")
        quantize_static(str(prepared), str(dst), ImageCalibration(calibration),
                        nodes_to_exclude=keep_float,
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=CalibrationMethod.MinMax)
    store_float_weights_as_fp16(dst)


def store_float_weights_as_fp16(path: Path, min_elements: int = 4096) -> int:
    """In an int8 graph, keep the float weights of the float-kept nodes as fp16 on disk with a
    Cast back to fp32: ONNX Runtime folds the Cast when it loads the graph, so they still
    compute in fp32, and the file carries half the bytes. Returns the bytes saved."""
    model = onnx.load(str(path))
    users: dict[str, list] = {}
    for n in model.graph.node:
        for name in n.input:
            users.setdefault(name, []).append(n)
    saved = 0
    for init in list(model.graph.initializer):
        readers = users.get(init.name, [])
        if (init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements
                or not readers or any(r.op_type in ("QuantizeLinear", "DequantizeLinear") for r in readers)):
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "_fp16")
        model.graph.initializer.remove(init)
        model.graph.initializer.append(half)
        model.graph.node.insert(0, helper.make_node("Cast", [half.name], [init.name],
                                                    name=init.name + "_to_fp32", to=onnx.TensorProto.FLOAT))
        saved += 2 * int(np.prod(init.dims))
    onnx.save(model, str(path))
    return saved


def decoder_to_int8(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gemm"])


def convert(out: Path, calibration: np.ndarray | None, precisions=("fp16", "int8")) -> None:
    """From out/fp32/*.onnx write out/fp16/*.onnx and out/int8/*.onnx (those asked for)."""
    f32 = {g: out / io_spec.graph_file("fp32", g) for g in io_spec.GRAPHS}
    if "fp16" in precisions:
        for g in io_spec.GRAPHS:
            to_fp16(f32[g], out / io_spec.graph_file("fp16", g))
    if "int8" in precisions:
        encoder_to_int8(f32[io_spec.ENCODER], out / io_spec.graph_file("int8", io_spec.ENCODER),
                        calibration)
        decoder_to_int8(f32[io_spec.DECODER], out / io_spec.graph_file("int8", io_spec.DECODER))
