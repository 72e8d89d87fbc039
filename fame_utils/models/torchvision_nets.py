"""The paper's ImageNet classifiers (torchvision architectures) with user-provided weights.

No registry ships these weights. ``weights="hub"`` reads the file torchvision would have downloaded from
the torch hub cache (``torch.hub.get_dir()/checkpoints/<file>``) and never downloads; a path loads a
state_dict; ``None`` gives seeded random weights. Preprocessing is the paper's: Resize(232) →
CenterCrop(224) → [0, 1] → ImageNet mean/std, for every network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models import ConvNeXt_Tiny_Weights, ResNet34_Weights, ResNet50_Weights, ResNet101_Weights, VGG19_Weights
from torchvision.models._api import WeightsEnum

from .checkpoints import load_torch_checkpoint
from .spec import IMAGENET_MEAN, IMAGENET_STD, ClassifierPreprocess, ModelSpec
from .weights import WeightsNotAvailableError, load_state_dict_strict, seeded_init, weights_label

__all__ = ["TORCHVISION_NETS", "build_torchvision_net", "hub_checkpoint_path"]


@dataclass(frozen=True)
class _Net:
    constructor: Callable[..., nn.Module]
    weights: WeightsEnum
    target_layer: str
    stages: tuple[str, ...]
    grid: str


_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")
TORCHVISION_NETS = {
    "resnet34": _Net(torchvision.models.resnet34, ResNet34_Weights.IMAGENET1K_V1, "layer4.2", _RESNET_STAGES, "512×7×7"),
    "resnet50": _Net(torchvision.models.resnet50, ResNet50_Weights.IMAGENET1K_V2, "layer4.2", _RESNET_STAGES, "2048×7×7"),
    "resnet101": _Net(torchvision.models.resnet101, ResNet101_Weights.IMAGENET1K_V2, "layer4.2", _RESNET_STAGES, "2048×7×7"),
    # VGG-19: the ReLU before each max-pool; features.35 = features[-2], the last ReLU (14×14).
    "vgg19": _Net(torchvision.models.vgg19, VGG19_Weights.IMAGENET1K_V1, "features.35",
                  ("features.3", "features.8", "features.17", "features.26", "features.35"), "512×14×14"),
    # ConvNeXt-T: the four CNBlock stages; features.7.2 = features[-1][-1], the last CNBlock.
    "convnext_tiny": _Net(torchvision.models.convnext_tiny, ConvNeXt_Tiny_Weights.IMAGENET1K_V1, "features.7.2",
                          ("features.1", "features.3", "features.5", "features.7"), "768×7×7"),
}


def hub_checkpoint_path(name: str) -> Path:
    """Where torchvision keeps the weights of ``name`` in the torch hub cache (may not exist)."""
    url = TORCHVISION_NETS[name].weights.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def build_torchvision_net(name: str, weights: str | None, trust_checkpoint: bool = False) -> ModelSpec:
    """Build torchvision network ``name`` with ``weights`` = ``"hub"``, a state_dict path or ``None``.

    ``trust_checkpoint`` allows full unpickling of the file (see :func:`load_torch_checkpoint`).

    Raises:
        WeightsNotAvailableError: ``"shipped"`` (nothing ships), or the hub file / path is absent.
    """
    net = TORCHVISION_NETS[name]
    enum_name = f"{type(net.weights).__name__}.{net.weights.name}"
    if weights == "shipped":
        raise WeightsNotAvailableError(
            f"no {name} ImageNet weights ship in any package registry; pass weights='hub' (the torch hub cache, "
            f"file {hub_checkpoint_path(name)}, i.e. torchvision's {enum_name}), a path to a state_dict, "
            "or weights=None for seeded random weights."
        )
    with seeded_init():
        module = net.constructor(weights=None)
    if weights == "hub":
        path = hub_checkpoint_path(name)
        if not path.is_file():
            raise WeightsNotAvailableError(
                f"{path} is not in the torch hub cache; copy torchvision's {enum_name} file {path.name} there "
                "(nothing is downloaded), or pass a path."
            )
        source = {"package": f"torchvision {enum_name} (torch hub cache)", "file": str(path), "licence": "BSD-3-Clause (torchvision)"}
    elif weights is not None:
        path = Path(weights).expanduser()
        source = {"package": "user checkpoint", "file": str(path), "licence": "as provided by the user"}
    else:
        path = None
        source = {"package": f"torchvision=={torchvision.__version__}", "file": "(seeded random weights)", "licence": "BSD-3-Clause"}
    if path is not None:
        load_state_dict_strict(module, load_torch_checkpoint(path, trust_checkpoint), f"checkpoint {path}")
    return ModelSpec(
        name=name,
        module=module,
        preprocess=ClassifierPreprocess(resize=232, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD),
        task="classification",
        input_size=224,
        target_layer=net.target_layer,
        stages=list(net.stages),
        class_names=list(net.weights.meta["categories"]),
        source=source,
        input_space=f"RGB crop 224×224, z = (x − mean)/std with ImageNet mean/std; target layer {net.target_layer} is {net.grid}",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weights=weights_label(weights),
    )
