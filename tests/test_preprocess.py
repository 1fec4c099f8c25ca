import numpy as np
import pytest

from runtime.errors import InputError
from runtime.preprocess import PreprocessConfig, preprocess


@pytest.mark.parametrize("shape,dtype", [((224, 224, 3), np.uint8), ((480, 640, 3), np.uint8),
                                         ((37, 1000, 3), np.uint8), ((300, 300), np.uint8),
                                         ((300, 300, 4), np.uint8), ((300, 300, 3), np.uint16),
                                         ((300, 300, 3), np.float32)])
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


@pytest.mark.parametrize("bad", [None, np.zeros((0, 0, 3), np.uint8), np.zeros((4, 4, 5), np.uint8)])
def test_unusable_frames_raise_input_error(bad):
    with pytest.raises(InputError):
        preprocess(bad)
