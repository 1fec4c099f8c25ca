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
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxruntime.transformers.float16 import convert_float_to_float16

from export.model import LAST_CHANNELS
from export.optimize import store_weights_as_fp16
from runtime.model import io_spec


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
        return {io_spec.IMAGE: self.images[self.i - 1 : self.i]}

    def rewind(self) -> None:
        self.i = 0


# Ops kept in float: the stem and block 0 (112x112, a tenth of the MACs). Quantising block 0's
# depthwise conv alone puts ~40% RMS error on the last map; with the stem and block 0 in
# float, the rest of the backbone in int8 is within ~13% and the encoder runs about 1.9x as
# fast as fp32 at two threads (docs/performance.md). The decoder is trained on these int8
# features (export.train int8_mix), so it says the same with them. After the backbone, the
# region taps (see export.model.RegionTaps) and the head are a few MFLOPs, and one shared
# scale would erase the mean-colour channels.
FLOAT_SCOPES = ("/_conv_stem/", "/_blocks.0/", "/_taps/", "/head/")
# ...but the head's context conv (export.model.RegionHead) is int8 like the backbone: its input
# is a ReLU map of one scale, it runs faster, and its weights take 0.33 MB less than in fp16.
# Int8 captions agree with fp32 as often either way.
INT8_IN_FLOAT_SCOPES = ("/head/context/",)


def last_map_product(graph: onnx.GraphProto) -> list[str]:
    """The head's product with the backbone's last map (export.model.RegionHead) and the layout
    ops before it. They run in int8 too: the map is already int8 there, and with its output left
    in float (no requantisation) ONNX Runtime fuses the product into one MatMulIntegerToFloat
    on the backbone's NHWC map, 4x faster than the float product of the same 49x1280x192. The
    decoder is trained on the products of these int8 weights (export.model.int8_rounded_rows)."""
    weights = {t.name: tuple(t.dims) for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        if (
            node.op_type == "MatMul"
            and node.name.startswith("/head/")
            and weights.get(node.input[1], (0,))[0] == LAST_CHANNELS
        ):
            chain, tensor = [node.name], node.input[0]
            while (
                (p := producer.get(tensor)) is not None
                and p.op_type in ("Transpose", "Reshape")
                and p.name.startswith("/head/")
            ):
                chain.append(p.name)
                tensor = p.input[0]
            return chain
    return []


# The objects head sees real photos, but calibration sees synthetic scenes, whose ImageNet
# logits span a few units: calibrated on them, a confident real-world logit would saturate.
# Its input (the mean of a ReLU6 map) and its logits get the ranges they can take instead.
POOLED_RANGE = (0.0, 6.0)  # the head's input
HEAD_RANGE = (-8.0, 24.0)  # its logits: step 1/8 in u8


def _objects_ranges(graph: onnx.GraphProto) -> dict:
    producer = {o: n for n in graph.node for o in n.output}
    head = producer.get(io_spec.OBJECTS)
    if head is None:
        return {}
    ranges = {io_spec.OBJECTS: HEAD_RANGE, head.input[0]: POOLED_RANGE}
    return {
        name: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}]
        for name, (lo, hi) in ranges.items()
    }


def encoder_to_int8(src: Path, dst: Path, calibration: np.ndarray) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared))
        graph = onnx.load(str(prepared)).graph
        int8 = last_map_product(graph)
        keep_float = [
            n.name
            for n in graph.node
            if n.name.startswith(FLOAT_SCOPES)
            and not n.name.startswith(INT8_IN_FLOAT_SCOPES)
            and n.name not in int8
        ]
        if not any(n.startswith("/_blocks.0/") for n in keep_float):
            raise RuntimeError(f"{src}: no nodes under /_blocks.0/; the graph's names changed")
        if any(n.startswith("/head/") for n in keep_float) and not int8:
            raise RuntimeError(f"{src}: no product of the last map under /head/; the graph changed")
        quantize_static(
            str(prepared),
            str(dst),
            ImageCalibration(calibration),
            nodes_to_exclude=keep_float,
            # the one MatMul quantised is the last-map product: float out
            extra_options={
                "TensorQuantOverrides": _objects_ranges(graph),
                "OpTypesToExcludeOutputQuantization": ["MatMul"],
            },
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
        )
    store_weights_as_fp16(dst)


def decoder_to_int8(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(
        str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"]
    )
    # the word embedding stays a float table (a Gather): its values are fp16 values already
    # (export.model.round_trained_weights_fp16), so fp16 bytes lose nothing
    store_weights_as_fp16(dst)


def convert(out: Path, calibration: np.ndarray | None, precisions=("fp16", "int8")) -> None:
    """From the fp32 graphs in `out` write the fp16 and int8 graphs beside them (those asked
    for)."""
    f32 = {g: out / io_spec.graph_file("fp32", g) for g in io_spec.GRAPHS}
    if "fp16" in precisions:
        for g in io_spec.GRAPHS:
            to_fp16(f32[g], out / io_spec.graph_file("fp16", g))
    if "int8" in precisions:
        encoder_to_int8(
            f32[io_spec.ENCODER], out / io_spec.graph_file("int8", io_spec.ENCODER), calibration
        )
        decoder_to_int8(f32[io_spec.DECODER], out / io_spec.graph_file("int8", io_spec.DECODER))
