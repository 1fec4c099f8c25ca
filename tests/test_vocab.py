import pytest

from runtime.model.vocab import BOS, EOS, PAD, UNK, Vocab, normalize, tokenize

pytestmark = pytest.mark.unit


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("A small red circle, a Blue square and 2 stars!") == [
        "a",
        "small",
        "red",
        "circle",
        "a",
        "blue",
        "square",
        "and",
        "2",
        "stars",
    ]
    assert normalize("  Two  RED squares. ") == "two red squares"


def test_encode_decode_round_trip_and_unknown_words():
    v = Vocab.build(["a red circle", "a blue square"])
    assert v.words[:4] == (PAD, BOS, EOS, UNK)
    ids = v.encode("A red square")
    assert ids[0] == v.bos and ids[-1] == v.eos
    assert v.decode(ids) == "a red square"
    assert v.decode(v.encode("a green circle")) == "a circle"  # green is <unk>, dropped


def test_decode_stops_at_eos():
    v = Vocab.build(["a red circle"])
    ids = [v.id("a"), v.id("red"), v.eos, v.id("circle")]
    assert v.decode(ids) == "a red"
