"""SceneSpeak device runtime: ONNX Runtime captioning, no torch. Run `python -m runtime --help`."""
