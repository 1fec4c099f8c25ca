"""SceneSpeak training side (needs torch): scenes, training, evaluation, ONNX export.

Run `python -m export --help`.
"""
