"""SceneSpeak device runtime: ONNX Runtime captioning, no torch. Run `python -m runtime --help`."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout: models/, assets/, device/

# OpenCV and its FFmpeg print their own warnings for every failed reconnect; the runtime reports
# source problems itself, in one line each. Set these variables to see them again.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
