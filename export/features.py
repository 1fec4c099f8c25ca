"""Backbone feature cache: every image's 1395x7x7 region map, computed once and memory-mapped.

The frozen EfficientNet-Lite0 is exported to ONNX and run through ONNX Runtime, about 3x
faster than torch eager on a small CPU; the export is checked against torch before use.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch
from tqdm import tqdm

from export.datasets import Sample
from export.model import EfficientNetLite, region_feature_dim
from runtime.model import io_spec
from runtime.model.preprocess import PreprocessConfig, preprocess, read_image

REGIONS = "regions-v3"  # v3: BatchNorm folded, weights rounded to fp16


def cache_version(net: EfficientNetLite) -> str:
    """What a cached feature map and backbone graph depend on: the backbone, its weights (a
    fine-tuned one, read back with --init, is not ImageNet's) and the recipe."""
    digest = hashlib.sha1()
    for name, t in net.state_dict().items():
        digest.update(name.encode() + t.detach().cpu().numpy().tobytes())
    return f"{net.variant}-{REGIONS}-{digest.hexdigest()[:10]}"


class _Features(torch.nn.Module):
    def __init__(self, net: EfficientNetLite):
        super().__init__()
        self.net = net

    def forward(self, image):
        return self.net.region_features(image)


def _probe() -> torch.Tensor:
    return torch.from_numpy(
        np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32)
    )


def export_backbone(net: EfficientNetLite, path: Path) -> Path:
    """The backbone's region features as ONNX at `path`, exported once per cache version."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.onnx.export(
            _Features(net).eval(),
            (_probe(),),
            str(path),
            input_names=[io_spec.IMAGE],
            output_names=[io_spec.FEATURES],
            opset_version=io_spec.OPSET,
            dynamo=False,
            dynamic_axes={io_spec.IMAGE: {0: "batch"}, io_spec.FEATURES: {0: "batch"}},
        )
        net.eval()
    return path


def backbone_session(net: EfficientNetLite, path: Path) -> ort.InferenceSession:
    """A session on the exported backbone, checked against torch at
    io_spec.FEATURES_TOLERANCE (absolute)."""
    session = ort.InferenceSession(
        str(export_backbone(net, path)), providers=["CPUExecutionProvider"]
    )
    probe = _probe()
    with torch.inference_mode():
        expected = net.region_features(probe).numpy()
    got = session.run(None, {io_spec.IMAGE: probe.numpy()})[0]
    if not np.allclose(got, expected, atol=io_spec.FEATURES_TOLERANCE):
        raise RuntimeError(
            f"{path}: ORT backbone differs from torch by {np.abs(got - expected).max()}"
        )
    return session


def compressed(img: np.ndarray, key: str) -> np.ndarray:
    """The image as a camera stream would deliver it: JPEG with 4:2:0 chroma at a quality in
    35..85 fixed by `key` (so a cache of it is reproducible). Video codecs and MJPEG webcams
    blur colour at shape edges the same way."""
    quality = 35 + int(hashlib.sha1(key.encode()).hexdigest()[:4], 16) % 51
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if ok else img


def load_images(
    samples: list[Sample], pre: PreprocessConfig = PreprocessConfig(), jpeg: bool = False
) -> np.ndarray:
    """Preprocessed (N,3,224,224) float32 images (JPEG-compressed with `jpeg`)."""
    images = [read_image(s.image) for s in samples]
    if jpeg:
        images = [compressed(im, str(s.image.name)) for im, s in zip(images, samples)]
    return np.concatenate([preprocess(im, pre) for im in images])


@torch.no_grad()
def cache_below(
    samples: list[Sample],
    net: EfficientNetLite,
    start: int,
    cache_dir: str | Path,
    pre: PreprocessConfig = PreprocessConfig(),
    batch: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """(maps entering block `start`, detail) float16 for the samples, memory-mapped from
    cache_dir: what fine-tuning the blocks from `start` on reads instead of images."""
    key = hashlib.sha1(f"{cache_version(net)}-below{start}".encode() + repr(pre).encode())
    for s in samples:
        key.update(f"{s.image.resolve()}:{s.image.stat().st_size}\n".encode())
    cache_dir = Path(cache_dir)
    paths = [cache_dir / f"{key.hexdigest()[:16]}-{part}.npy" for part in ("maps", "detail")]
    if all(p.exists() for p in paths):
        maps, detail = (np.load(p, mmap_mode="r") for p in paths)
        return maps, detail
    cache_dir.mkdir(parents=True, exist_ok=True)
    net.eval()
    h, d = net.below(torch.zeros(1, 3, pre.size, pre.size), start)
    outs = [
        np.lib.format.open_memmap(
            p.with_suffix(".tmp.npy"),
            mode="w+",
            dtype=np.float16,
            shape=(len(samples), *t.shape[1:]),
        )
        for p, t in zip(paths, (h, d))
    ]
    for i in tqdm(range(0, len(samples), batch), desc=f"caching maps below block {start}",
                  unit="batch"):  # fmt: skip
        blobs = torch.from_numpy(load_images(samples[i : i + batch], pre))
        for out, t in zip(outs, net.below(blobs, start)):
            out[i : i + len(blobs)] = t.numpy()
    for out, p in zip(outs, paths):
        out.flush()
        Path(out.filename).replace(p)
    maps, detail = (np.load(p, mmap_mode="r") for p in paths)
    return maps, detail


def _int8_recipe(calibration: np.ndarray) -> str:
    """A digest of what decides the int8 backbone: its calibration and what stays float."""
    from export.quantize import FLOAT_SCOPES

    return hashlib.sha1(calibration.tobytes() + repr(FLOAT_SCOPES).encode()).hexdigest()[:12]


def int8_backbone_session(
    net: EfficientNetLite, cache_dir: Path, calibration: np.ndarray
) -> ort.InferenceSession:
    """The backbone quantised exactly as the bundle's int8 encoder is: pads folded
    (export.optimize), then export.quantize's recipe."""
    from export.optimize import fold_pads_file
    from export.quantize import encoder_to_int8

    src = export_backbone(net, cache_dir / f"backbone-{cache_version(net)}.onnx")
    dst = cache_dir / f"backbone-{cache_version(net)}-int8-{_int8_recipe(calibration)}.onnx"
    if not dst.exists():
        folded = dst.with_suffix(".fp32.onnx")
        fold_pads_file(src, folded)
        encoder_to_int8(folded, dst, calibration)
        folded.unlink()
    return ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])


def cache_features(
    samples: list[Sample],
    net: EfficientNetLite,
    cache_dir: str | Path,
    pre: PreprocessConfig = PreprocessConfig(),
    batch: int = 32,
    int8_calibration: np.ndarray | None = None,
    jpeg: bool = False,
) -> np.ndarray:
    """Region feature maps (N,F,7,7) float16 for the samples (F: region_feature_dim of the
    backbone, 1395 for Lite0), memory-mapped from cache_dir.
    With `int8_calibration` (preprocessed images), from the int8 backbone instead; with `jpeg`,
    of the images JPEG-compressed as in compressed()."""
    key = hashlib.sha1(cache_version(net).encode() + repr(pre).encode())
    if int8_calibration is not None:
        key.update(b"int8" + _int8_recipe(int8_calibration).encode())
    if jpeg:
        key.update(b"jpeg")
    for s in samples:
        key.update(f"{s.image.resolve()}:{s.image.stat().st_size}\n".encode())
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{key.hexdigest()[:16]}.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
    if int8_calibration is None:
        session = backbone_session(net, cache_dir / f"backbone-{cache_version(net)}.onnx")
    else:
        session = int8_backbone_session(net, cache_dir, int8_calibration)
    tmp = path.with_suffix(".tmp.npy")
    shape = (len(samples), region_feature_dim(net.variant), 7, 7)
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
    desc = (
        "caching features"
        + (" (int8)" if int8_calibration is not None else "")
        + (" (jpeg)" if jpeg else "")
    )
    for i in tqdm(range(0, len(samples), batch), desc=desc, unit="batch"):
        blobs = load_images(samples[i : i + batch], pre, jpeg)
        out[i : i + len(blobs)] = session.run(None, {io_spec.IMAGE: blobs})[0]
    out.flush()
    del out
    tmp.rename(path)
    return np.load(path, mmap_mode="r")
