"""SceneSpeak device runtime: ONNX Runtime captioning, no torch. Run `python -m runtime --help`."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout (or site-packages when installed)
# models/, assets/ and device/profiles: the checkout's, else the copies `pip install .` puts in
# the package (runtime/data), so that `scenespeak caption photo.jpg` works from any folder
DATA = ROOT if (ROOT / "models").is_dir() else Path(__file__).resolve().parent / "data"

# OpenCV and its FFmpeg print their own warnings for every failed reconnect; the runtime reports
# source problems itself, in one line each. Set these variables to see them again.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

# Privacy: ONNX Runtime's telemetry is on by default (a device id and an event database under
# ~/.cache/Microsoft, a .ses file in $TMPDIR, and DNS look-ups for Microsoft's event servers
# seconds into a run). An assistive camera in someone's home sends nothing anywhere: it is
# turned off before onnxruntime is first imported, by every entry point (they all import this
# package first), whatever the environment says.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

# The image-bomb limit for every format OpenCV decodes (Radiance HDR, PFM, ...), read by cv2
# when it loads; runtime.model.preprocess also checks headers it can read before decoding.
MAX_PIXELS = 50_000_000
os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(MAX_PIXELS)
