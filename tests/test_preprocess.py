import numpy as np
import pytest
from conftest import ROOT

from runtime.errors import InputError
from runtime.model.preprocess import PreprocessConfig, preprocess

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "shape,dtype",
    [
        ((224, 224, 3), np.uint8),
        ((480, 640, 3), np.uint8),
        ((37, 1000, 3), np.uint8),
        ((300, 300), np.uint8),
        ((300, 300, 4), np.uint8),
        ((300, 300, 3), np.uint16),
        ((300, 300, 3), np.float32),
    ],
)
def test_any_frame_becomes_one_normalised_rgb_blob(shape, dtype):
    frame = np.zeros(shape, dtype)
    blob = preprocess(frame)
    assert blob.shape == (1, 3, 224, 224) and blob.dtype == np.float32
    assert np.allclose(blob, (0 - 127) / 128)


def test_channels_are_swapped_to_rgb():
    frame = np.zeros((224, 224, 3), np.uint8)
    frame[..., 2] = 255  # red in BGR
    blob = preprocess(frame, PreprocessConfig())
    assert blob[0, 0].mean() == pytest.approx(1.0)  # R channel first
    assert blob[0, 2].mean() == pytest.approx(-127 / 128)


@pytest.mark.parametrize(
    "bad", [None, np.zeros((0, 0, 3), np.uint8), np.zeros((4, 4, 5), np.uint8)]
)
def test_unusable_frames_raise_input_error(bad):
    with pytest.raises(InputError):
        preprocess(bad)


@pytest.mark.parametrize(
    "cfg", [PreprocessConfig(), PreprocessConfig(mean=110.5, std=58.4, channel_order="BGR")]
)
@pytest.mark.parametrize("shape", [(224, 224, 3), (480, 640, 3), (100, 90, 3)])
def test_blob_is_opencvs_normalised_blob_of_the_resized_frame(cfg, shape):
    from runtime.model.preprocess import resize

    """Every value is (pixel - mean) / std of the frame resized to 224x224, channels in the
    configured order: exactly what cv2.dnn.blobFromImage makes of it, only faster."""
    import cv2

    frame = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    resized = resize(frame, 224)
    want = cv2.dnn.blobFromImage(
        resized, 1.0 / cfg.std, mean=(cfg.mean,) * 3, swapRB=cfg.channel_order == "RGB"
    )
    assert np.array_equal(preprocess(frame, cfg), want)


@pytest.mark.parametrize(
    "shape", [(480, 640, 3), (427, 640, 3), (300, 451, 3), (720, 1280, 3), (2160, 3840, 3)]
)
def test_shrinking_is_anti_aliased_like_an_area_mean(shape):
    """Shrinking stays an area mean: within 1.5 grey levels (mean) of OpenCV's INTER_AREA on a
    real photo, and one-pixel stripes, which plain bilinear keeps at full contrast, come out
    close to mid-grey."""
    import cv2

    from runtime.model.preprocess import resize

    photo = cv2.imread(str(ROOT / "assets" / "photos" / "chelsea.jpg"))
    frame = cv2.resize(photo, shape[1::-1], interpolation=cv2.INTER_CUBIC)
    area = cv2.resize(frame, (224, 224), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(resize(frame, 224).astype(float) - area).mean() < 1.5
    stripes = np.zeros(shape, np.uint8)
    stripes[:, ::2] = 255
    out = resize(stripes, 224).astype(float)
    bilinear = cv2.resize(stripes, (224, 224), interpolation=cv2.INTER_LINEAR).astype(float)
    assert abs(out.mean() - 127.5) < 3 and out.std() < 0.65 * bilinear.std(), (
        out.std(),
        bilinear.std(),
    )
