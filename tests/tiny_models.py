"""The tiny seeded networks every test file shares: known receptive fields, hand-computable outputs, eval mode.

Each builder seeds torch itself, so the same call gives the same weights in any test.
"""

from __future__ import annotations

import torch
from torch import nn


class Recorder(nn.Module):
    """Identity that counts how often it runs (to prove a forward pass stops before it)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x


class LinearLogit(nn.Module):
    """One logit per sample: z = Σ w·x + bias (gradient w everywhere, so every LOTS step is known in closed form)."""

    def __init__(self, weight: torch.Tensor, bias: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x * self.weight).sum(dim=(1, 2, 3)) + self.bias)[:, None]


class RegionSum(nn.Module):
    """Logit 0 = Σ over channels and the region rows 0:2, columns 0:3 of the input; logit 1 = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        region = x[:, :, 0:2, 0:3].sum(dim=(1, 2, 3))
        return torch.stack([region, torch.zeros_like(region)], dim=1)


class RegionEmbedding(nn.Module):
    """φ(x) = (mean of x over rows 8–15 / cols 8–15, 0.5): occluding that region lowers cos with (1, 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        region = x[:, :, 8:16, 8:16].mean(dim=(1, 2, 3))
        return torch.stack([region, torch.full_like(region, 0.5)], dim=1)


class FlattenEmbedding(nn.Module):
    """φ(x) = x flattened: cos(ones, ones ⊙ keep) = sqrt(kept / total), so every score is hand-computable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


class Residual(nn.Module):
    """x + depthwise 3×3 conv(x): receptive field 3 through the branch, 1 through the shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, groups=channels), nn.BatchNorm2d(channels), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


def pointwise_net() -> nn.Module:
    """1×1 convolution with positive weights, ReLU, non-overlapping 4×4 average pooling: on a 16×16 input,
    feature-map location k sees exactly its own 4×4 cell."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.AvgPool2d(4))
    with torch.no_grad():
        net[0].weight.uniform_(0.1, 1.0)
        net[0].bias.fill_(0.1)
    return net.eval()


def deep_pointwise_net() -> nn.Module:
    """1×1 convolutions around non-overlapping 4×4 pooling: location k depends only on its own 4×4 cell (depth 2 at "3")."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.AvgPool2d(4), nn.Conv2d(8, 8, 1), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()


def spread_net() -> nn.Module:
    """A 5×5 convolution with positive weights before 4×4 pooling: every location also sees 2 pixels of each neighbouring cell."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 5, padding=2), nn.ReLU(), nn.AvgPool2d(4))
    with torch.no_grad():
        net[0].weight.uniform_(0.1, 1.0)
        net[0].bias.fill_(0.1)
    return net.eval()


def three_pixel_net() -> nn.Module:
    """One 3×3 convolution on one channel: receptive field 3."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()).eval()


def pooled_net() -> nn.Module:
    """conv3 (s1) → ReLU → maxpool 2/2 → residual depthwise conv3: field 1 + 2 + 1 + 2·2 = 8."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2), Residual(4)).eval()


def hooked_net() -> nn.Sequential:
    """conv3 → ReLU → (conv1 → :class:`Recorder`) on one channel, for hook tests."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(2, 2, 1), Recorder()))


def cell_network(seed: int = 0, pool: int = 4) -> nn.Module:
    """1×1 convolutions and non-overlapping pooling: location (i, j) sees exactly its pool×pool cell; ends in a :class:`Recorder`."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.Tanh(), nn.AvgPool2d(pool), nn.Conv2d(4, 6, 1), Recorder()).eval()


def grid7_network(seed: int = 0) -> nn.Module:
    """28×28 input → 7×7 feature map at layer "3" (3×3 conv, pooling by 4, 1×1 conv), then 3 logits."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.AvgPool2d(4), nn.Conv2d(4, 5, 1), nn.Flatten(), nn.Linear(245, 3)).eval()


def tanh_classifier(seed: int = 0, classes: int = 5) -> nn.Module:
    """Two 3×3 conv blocks with tanh and average pooling, then ``classes`` logits."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, classes),
    ).eval()


def pooled_classifier() -> nn.Module:
    """One 3×3 conv (target layer "0"), ReLU, global average pooling, 3 logits."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()


def cam_classifier(seed: int = 0) -> nn.Module:
    """Two conv blocks with BatchNorm (a 16×16 input gives an 8×8 feature map at ``features.3``) and 5 classes."""
    torch.manual_seed(seed)
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU(),
    ))
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flatten", nn.Flatten())
    model.add_module("head", nn.Linear(8, 5))
    with torch.no_grad():
        bn = model.features[1]
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.3, 0.3)
    return model.eval()


def linear_classifier() -> nn.Module:
    """Two logits of a 1×4×4 image; class 0 sums all 16 pixels, so each LOTS step of η = 1/16 lowers z₀ by exactly 1."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2, bias=False))
    with torch.no_grad():
        net[1].weight[0].fill_(1.0)
        net[1].weight[1].fill_(-1.0)
    return net.eval()


def pooled_embedder(seed: int = 0) -> nn.Module:
    """16×16 input → 3×3 conv, tanh, pooling by 4 → an 8-D embedding."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.AvgPool2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 8)).eval()


def cam_embedder(seed: int = 0, dims: int = 16) -> nn.Module:
    """32×32 input → a D-dimensional embedding with an 8×8 ``body`` layer for the CAMs."""
    torch.manual_seed(seed)
    net = nn.Sequential()
    net.add_module("stem", nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()))
    net.add_module("body", nn.Sequential(nn.Conv2d(8, 8, 3, stride=4, padding=1), nn.ReLU()))
    net.add_module("head", nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 8, dims)))
    return net.eval()


def strided_embedder(dims: int = 6) -> nn.Module:
    """16×16 input → a 4×4 ``body`` layer (stride 4) → a D-dimensional embedding."""
    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module("body", nn.Sequential(nn.Conv2d(3, 4, 3, stride=4, padding=1), nn.ReLU()))
    net.add_module("head", nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, dims)))
    return net.eval()
