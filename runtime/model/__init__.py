"""The model: a bundle's two ONNX graphs and what it takes to run them. The manifest and its
I/O contract (bundle, io_spec, vocab, onnx_check), ONNX Runtime sessions (session), the frame
to blob (preprocess), the decode loop and its token decoders (decoding), the captioner, the
caption's confidence, the objects' places from the encoder's map (where), graph edits (prune)
and caption scores (metrics).

Imports go one way: runtime.app -> runtime.channels -> runtime.model, and all three may use
runtime.errors and runtime.options; nothing here imports channels or app."""
