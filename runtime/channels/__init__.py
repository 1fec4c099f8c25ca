"""What a description is made of: the ImageNet objects (objects), text read aloud (text) and the
composer that makes one utterance of them and the caption (compose). Channels use
runtime.model, never runtime.app."""
