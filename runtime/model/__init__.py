"""The model: a bundle's two ONNX graphs and what it takes to run them. The manifest and its
I/O contract (bundle, io_spec, vocab, onnx_check), ONNX Runtime sessions (session), the frame
to blob (preprocess), the decode loop and its token decoders (decoding), the captioner, the
caption's confidence, where the named objects are in the encoder's map (where), the protobuf
read and edited without `onnx` (wire), graph edits (prune) and caption scores (metrics). It
measures and names; the words said for a place are the channels' (runtime.channels.places).

Imports go one way: runtime.app -> runtime.channels -> runtime.model, and all three may use
runtime.errors and runtime.options; nothing here imports channels or app."""
