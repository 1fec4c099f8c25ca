"""The ONNX contract, as data: graph and bundle file names, tensor names, dtypes and named axes,
the opsets written and accepted, and the tolerances an export is validated at.

encoder.<precision>.onnx runs once per image; decoder_step.<precision>.onnx runs once per
token, taking and returning the LSTM state. The COCO detector (models/detector) is one graph,
detector.<precision>.onnx. The exporter builds its graphs from these tables and the runtime
feeds them by these names; nothing else in the project spells a tensor name, an opset or a
validation tolerance (tests/test_io_spec.py checks).
"""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("fp32", "fp16", "int8")
ENCODER, DECODER = "encoder", "decoder_step"
GRAPHS = (ENCODER, DECODER)

# files of a bundle (and of the detector's folder) besides its graphs
MANIFEST = "manifest.json"  # what a bundle holds, with every file's sha256
OBJECTS_FILE = "objects.json"  # the spoken name of each ImageNet class (export/objects.py)


def graph_file(precision: str, graph: str) -> str:
    """Path of a graph inside a bundle, e.g. 'decoder_step.int8.onnx'."""
    return f"{graph}.{precision}.onnx"


def weights_file(graph: str) -> str:
    """The external-data file of a graph's fp32 weights, e.g. 'encoder.weights'. The fp32 graph
    reads it as it is and the fp16 graph casts the same bytes to fp16 when it loads, so a bundle
    holds each weight once. ONNX Runtime resolves external data beside the graph and refuses
    '..', hence one flat folder."""
    return f"{graph}.weights"


# tensor names
IMAGE = "image"  # the encoder's input (and the detector's, and the feature cache's)
REGIONS, REGIONS_ATT = "regions", "regions_att"
H0, C0 = "h0", "c0"
OBJECTS = "imagenet_logits"
TOKEN, H, C = "token", "h", "c"
LOGITS, H_NEXT, C_NEXT, ALPHA = "logits", "h_next", "c_next", "alpha"

# name -> (dtype, axes). Axes are named for documentation; only "batch" is dynamic in the
# graphs, the others are fixed by each bundle's model sizes (recorded in its manifest), but
# for those in FIXED_AXES, the same in every bundle.
ENCODER_INPUTS = {IMAGE: ("float32", ("batch", 3, 224, 224))}
ENCODER_OUTPUTS = {
    REGIONS: ("float32", ("batch", "regions", "region_dim")),  # (B,49,D) projected 7x7 map
    REGIONS_ATT: ("float32", ("batch", "regions", "attention_dim")),  # (B,49,A) for attention
    H0: ("float32", ("batch", "hidden_dim")),
    C0: ("float32", ("batch", "hidden_dim")),
}
# The objects channel: the backbone's own ImageNet head, from the same forward pass. Optional:
# a bundle has it when its manifest's io lists it (bundles exported before it have not).
OBJECTS_OUTPUTS = {OBJECTS: ("float32", ("batch", "classes"))}  # (B,1000)
DECODER_INPUTS = {
    TOKEN: ("int64", ("batch",)),
    H: ("float32", ("batch", "hidden_dim")),
    C: ("float32", ("batch", "hidden_dim")),
    REGIONS: ENCODER_OUTPUTS[REGIONS],
    REGIONS_ATT: ENCODER_OUTPUTS[REGIONS_ATT],
}
DECODER_OUTPUTS = {
    LOGITS: ("float32", ("batch", "vocab")),
    H_NEXT: ("float32", ("batch", "hidden_dim")),
    C_NEXT: ("float32", ("batch", "hidden_dim")),
    ALPHA: ("float32", ("batch", "regions")),  # attention weights over the 49 regions
}
INITIAL_STATE = {H0: H, C0: C}  # encoder output -> decoder input
STATE = {H_NEXT: H, C_NEXT: C}  # decoder output fed back at the next step
CONTEXT = (REGIONS, REGIONS_ATT)  # encoder outputs passed unchanged to every step
FIXED_AXES = {"regions": 49}  # axis -> size in every bundle: the 7x7 map's regions

Table = dict[str, tuple[str, tuple]]  # tensor name -> (dtype, axes)

SPECS: dict[str, tuple[Table, Table]] = {  # what the exporter writes
    ENCODER: (ENCODER_INPUTS, {**ENCODER_OUTPUTS, **OBJECTS_OUTPUTS}),
    DECODER: (DECODER_INPUTS, DECODER_OUTPUTS),
}
REQUIRED: dict[str, tuple[Table, Table]] = {  # what the runtime needs of any bundle
    ENCODER: (ENCODER_INPUTS, ENCODER_OUTPUTS),
    DECODER: (DECODER_INPUTS, DECODER_OUTPUTS),
}


DYNAMIC = ("batch",)


def dynamic_axes(graph: str) -> dict[str, dict[int, str]]:
    """Dynamic axes of a graph, in the form torch.onnx.export takes."""
    inputs, outputs = SPECS[graph]
    return {
        name: {i: a for i, a in enumerate(axes) if a in DYNAMIC}
        for name, (_, axes) in {**inputs, **outputs}.items()
    }


# The feature cache of training (export/features.py): the backbone alone, IMAGE -> FEATURES
# (B,1395,7,7), exported to ONNX to run faster than torch; never part of a bundle.
FEATURES = "features"

# The COCO detector (runtime/model/detector.py; export/detector.py gives the graph these names):
# input IMAGE, and per stride s of its manifest one output of each kind, e.g. scores_8.
DETECTOR_INPUT = IMAGE
DETECTOR_SCORES, DETECTOR_DISTS = "scores", "dists"  # (1,N_s,80) and (1,N_s,4*(reg_max+1))


def detector_output(kind: str, stride: int) -> str:
    """A detector output's name, e.g. 'scores_8' (kind DETECTOR_SCORES, stride 8)."""
    return f"{kind}_{stride}"


def detector_outputs(strides) -> list[str]:
    """The detector's outputs, in the order it is run: every stride's scores, then its dists."""
    return [detector_output(kind, s) for kind in (DETECTOR_SCORES, DETECTOR_DISTS) for s in strides]


def detector_file(precision: str) -> str:
    """Path of the detector's graph inside its folder, e.g. 'detector.int8.onnx'."""
    return f"detector.{precision}.onnx"


# opsets
OPSET = 17  # the default-domain opset the exporter writes (captioner, detector, feature cache)
OPSETS = range(13, 22)  # default-domain opsets the runtime accepts (ORT 1.16, JetPack 5: <= 19+)


@dataclass(frozen=True)
class Tolerance:
    """fp32: np.allclose(ort, torch, rtol, atol). Reduced precisions: their error is spread over
    a deep graph, so it is bounded by the relative RMS error ||ort - torch|| / ||torch|| and, to
    catch a broken graph, by the largest error relative to the tensor's largest magnitude."""

    rtol: float = 0.0
    atol: float = 0.0
    rms: float | None = None  # reduced precisions: most relative RMS error
    max_rel: float | None = None  # reduced precisions: most max|ort - torch| / max|torch|


# Per precision: a tolerance for each graph's outputs, and where one output needs its own, an
# entry "graph.output" beside it (export.validate).
# fp32 decoder state: c reaches ~100 (the default bundle), where fp32's own step is ~1e-5 and a
# different order of summation moves it by 1e-4 to 2e-4; logits stay at atol 1e-4.
_FP32_STATE = Tolerance(rtol=1e-5, atol=1e-4)
TOLERANCES = {
    "fp32": {
        ENCODER: Tolerance(rtol=1e-3, atol=1e-3),
        DECODER: Tolerance(atol=1e-4),
        f"{DECODER}.{H_NEXT}": _FP32_STATE,
        f"{DECODER}.{C_NEXT}": _FP32_STATE,
    },
    # fp16 encoder: h0 = tanh(a sum over the 49 regions' features), and where that sum is near
    # zero one element of h0 moves by up to 0.6 of its range (default bundle, 200 validation
    # images; RMS 0.5%) while captions agree 100%. As for int8, the bound on the worst element
    # only catches a broken graph; RMS and caption agreement carry the accuracy.
    "fp16": {
        ENCODER: Tolerance(rms=0.03, max_rel=1.0),
        DECODER: Tolerance(rms=0.005, max_rel=0.02),
    },
    # int8 decoder step (dynamic int8): where an LSTM gate's input sits at its threshold, one
    # element of h can move by a third to a half of h's range while the RMS error stays ~2%, and
    # the worst element grows with the number of images checked (default bundle: 0.33 over 64
    # validation images, 0.48 over 200). So the bound on it only catches a broken graph, which
    # is off by the whole range; RMS and caption agreement carry the accuracy.
    "int8": {ENCODER: Tolerance(rms=0.30, max_rel=2.5), DECODER: Tolerance(rms=0.05, max_rel=1.0)},
}
CAPTION_AGREEMENT = {"fp32": 1.0, "fp16": 0.97, "int8": 0.97}  # least share equal to torch's
FEATURES_TOLERANCE = 1e-3  # the feature cache's graph against torch, absolute
DETECTOR_TF_TOLERANCE = 1e-3  # the detector's graph against TensorFlow, absolute, every output
