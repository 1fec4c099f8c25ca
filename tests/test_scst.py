"""Self-critical training: its CIDEr-D is the evaluation's, and its gradient favours the
better-rewarded sample."""

import numpy as np
import pytest
from conftest import needs_torch

pytestmark = [pytest.mark.unit, needs_torch]

REFS = [
    ["a dog runs on the grass", "a brown dog running across a lawn", "the dog is running"],
    ["a plate of broccoli on a table", "broccoli and rice on a white plate", "a meal on a plate"],
    ["a man rides a bike down the street", "a cyclist on a city street", "a man on a bicycle"],
    ["a kitchen with a sink and an oven", "a small kitchen", "an oven beside a white sink"],
    ["a dog on a lawn", "a dog on the grass", "a small dog"],
]
CANDIDATES = [
    "a dog running on the grass",
    "a man is playing with a dog",
    "a man riding a bike on the street",
    "a kitchen with a sink",
    "a dog a dog a dog on a dog",  # repeats are clipped to the references' counts
]


def test_cider_d_equals_pycocoevalcap_cider():
    cider_mod = pytest.importorskip("pycocoevalcap.cider.cider", reason="pycocoevalcap missing")
    from export.scst import CiderD

    gts = {i: refs for i, refs in enumerate(REFS)}
    res = {i: [c] for i, c in enumerate(CANDIDATES)}
    want_mean, want = cider_mod.Cider().compute_score(gts, res)
    ours = CiderD(REFS, eos=False)
    got = [ours.score(c, i) for i, c in enumerate(CANDIDATES)]
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert got[1] < 0.2 < got[0]  # the dog where there is broccoli scores nothing


def test_eos_makes_a_dangling_ending_cost_more():
    """Scoring <eos> as a word: a caption cut off after "on a" loses more against the whole
    one than it does without it."""
    from export.scst import CiderD

    def gap(cider, image, whole, cut):
        return cider.score(whole, image) - cider.score(cut, image)

    with_eos, without = CiderD(REFS), CiderD(REFS, eos=False)
    for image, whole, cut in [
        (1, "a plate of broccoli on a table", "a plate of broccoli on a"),
        (2, "a man on a bicycle", "a man on a"),
    ]:
        assert gap(with_eos, image, whole, cut) > gap(without, image, whole, cut) + 0.3
    words = with_eos.words("a man on a bicycle")
    assert words[-1] == "<eos>" and with_eos.score(words, 2) > with_eos.score(words[:-1], 2)


def test_the_loss_raises_the_better_sample_and_lowers_the_worse():
    import torch

    from export.scst import self_critical_loss

    # one image, two samples of two tokens: the first rewarded more
    logp = torch.zeros(2, 2, requires_grad=True)
    mask = torch.ones(2, 2)
    self_critical_loss(logp, mask, np.array([1.0, 0.2]), k=2).backward()
    assert (logp.grad[0] < 0).all() and (logp.grad[1] > 0).all()  # descent raises row 0
    logp.grad = None
    self_critical_loss(logp, mask, np.array([0.5, 0.5]), k=2).backward()
    assert torch.count_nonzero(logp.grad) == 0  # equal rewards: nothing to learn


def test_sampling_stops_each_row_at_its_eos():
    import torch

    from export.model import AttentionDecoder, ModelConfig
    from export.scst import sample

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=6, region_dim=8, attention_dim=8, embed_dim=4, hidden_dim=8)
    decoder = AttentionDecoder(cfg)
    head = (torch.randn(3, 49, 8), torch.randn(3, 49, 8), torch.zeros(3, 8), torch.zeros(3, 8))
    tokens, logp, mask = sample(decoder, head, k=4, max_len=12, bos=1, eos=2)
    assert tokens.shape[0] == logp.shape[0] == 12 and logp.requires_grad
    for row, m in zip(tokens.tolist(), mask.tolist()):
        end = row.index(2) + 1 if 2 in row else len(row)
        assert m == [1.0] * end + [0.0] * (len(row) - end)


def test_beams_are_each_images_k_best_distinct_captions_in_order():
    import torch

    from export.model import AttentionDecoder, ModelConfig
    from export.scst import beams

    torch.manual_seed(1)
    cfg = ModelConfig(vocab_size=7, region_dim=8, attention_dim=8, embed_dim=4, hidden_dim=8)
    decoder = AttentionDecoder(cfg).eval()
    head = (torch.randn(2, 49, 8), torch.randn(2, 49, 8), torch.randn(2, 8), torch.randn(2, 8))
    tokens, logp, mask = beams(decoder, head, k=3, max_len=6, bos=1, eos=2)
    assert logp.requires_grad and tokens.shape == logp.shape == mask.shape
    totals = (logp * mask).sum(1).detach().view(2, 3)
    assert (totals[:, :-1] >= totals[:, 1:] - 1e-5).all()  # best first
    for image in range(2):
        rows = tokens.view(2, 3, -1)[image].tolist()
        kept = [tuple(r[: r.index(2) + 1] if 2 in r else r) for r in rows]
        assert len(set(kept)) == 3  # three different captions
    # the best beam scores at least as well as the greedy caption
    t, h, c = torch.tensor([1]), head[2][:1], head[3][:1]
    greedy = 0.0
    with torch.no_grad():
        for _ in range(6):
            logits, h, c, _ = decoder.step(t, h, c, head[0][:1], head[1][:1])
            lp = logits.log_softmax(-1)
            t = lp.argmax(-1)
            greedy += float(lp[0, t])
            if int(t) == 2:
                break
    assert float(totals[0, 0]) >= greedy - 1e-5
