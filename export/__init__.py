"""SceneSpeak training side (needs torch): scenes, training, evaluation, ONNX export.

Run `python -m export --help`.
"""

import runtime  # noqa: F401,E402  ONNX Runtime's telemetry off, before any module imports it
