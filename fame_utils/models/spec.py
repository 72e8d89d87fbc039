"""What a loaded network comes with: :class:`ModelSpec`, and the preprocessing it expects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import functional as TF

__all__ = [
    "ModelSpec",
    "ClassifierPreprocess",
    "FacePreprocess",
    "imagenet_class_names",
    "TF_MEAN_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TF_MEAN_STD = (0.5, 0.5, 0.5)


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in index order, from torchvision's weights metadata (no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def _require_pil(image: object) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise TypeError(f"preprocess expects a PIL image, got {type(image).__name__}; load files with fame_utils.data.load_image.")
    return image.convert("RGB")


@dataclass(frozen=True)
class ClassifierPreprocess:
    """PIL image → normalised (3, crop, crop) tensor.

    Resize the shorter side to ``resize`` (bilinear, antialiased), centre-crop ``crop``, scale to
    [0, 1], then z = (x − mean) / std per channel (RGB order).
    """

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = _require_pil(image)
        image = TF.resize(image, self.resize, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        tensor = TF.to_tensor(TF.center_crop(image, self.crop))
        return TF.normalize(tensor, self.mean, self.std)


@dataclass(frozen=True)
class FacePreprocess:
    """Aligned face crop (PIL) → [0, 1] (3, size, size) tensor in the network's channel order.

    The crop is resized (bilinear, antialiased) to ``size`` × ``size`` only if it has another size;
    ``bgr=True`` reverses the channels. The network's own scaling happens inside the module.
    """

    size: int
    bgr: bool = False

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = _require_pil(image)
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        tensor = TF.to_tensor(image)
        return tensor.flip(0) if self.bgr else tensor


@dataclass(frozen=True)
class ModelSpec:
    """A loaded network and everything needed to feed it, explain it and plot its inputs.

    Attributes:
        name: registry name (see :func:`fame_utils.models.available_models`).
        module: the network in eval mode, on ``device``; takes the output of ``preprocess`` (batched).
        preprocess: PIL image → (3, H, W) CPU tensor in the network's input space (``input_space``).
        task: ``"classification"`` (logits over ``class_names``) or ``"verification"`` (embeddings).
        input_size: side length of the square network input.
        target_layer: dotted name of the CAM/FAME layer (the last spatial feature map used in the paper).
        stages: dotted names of stage outputs, shallow → deep (for per-depth experiments).
        class_names: ImageNet class names for classifiers, ``None`` for face networks.
        source: where the weights came from: ``package``, ``file``, ``licence`` (and ``weights``).
        input_space: what the module's input tensor is, in words.
        mean, std, bgr: the affine map and channel order that ``preprocess`` applied after scaling to
            [0, 1]; :meth:`unnormalize` inverts them.
        similarity: how to compare embeddings (``"cosine"`` or ``"l2"``); ``None`` for classifiers.
        weights: ``"shipped"``, ``"hub"``, ``"random"`` or the checkpoint path that was loaded.
        device: the device ``module`` lives on.
    """

    name: str
    module: nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    task: str
    input_size: int
    target_layer: str
    stages: list[str]
    class_names: list[str] | None
    source: dict[str, str]
    input_space: str
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    bgr: bool = False
    similarity: str | None = None
    weights: str = "shipped"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def unnormalize(self, tensor: torch.Tensor) -> torch.Tensor:
        """Map a preprocessed (3, H, W) or (B, 3, H, W) tensor back to RGB in [0, 1]: x = z·std + mean."""
        if tensor.dim() not in (3, 4) or tensor.shape[-3] != 3:
            raise ValueError(f"expected a (3, H, W) or (B, 3, H, W) tensor, got shape {tuple(tensor.shape)}")
        shape = (3, 1, 1)
        mean = torch.tensor(self.mean, dtype=tensor.dtype, device=tensor.device).view(shape)
        std = torch.tensor(self.std, dtype=tensor.dtype, device=tensor.device).view(shape)
        pixels = tensor.detach() * std + mean
        if self.bgr:
            pixels = pixels.flip(-3)
        return pixels.clamp(0.0, 1.0)

    def to_display(self, tensor: torch.Tensor) -> np.ndarray:
        """Preprocessed tensor → float RGB image(s) in [0, 1] for plotting.

        (3, H, W) and (1, 3, H, W) give H×W×3; (B, 3, H, W) with B > 1 gives B×H×W×3.
        """
        pixels = self.unnormalize(tensor)
        if pixels.dim() == 4 and pixels.shape[0] == 1:
            pixels = pixels[0]
        return pixels.movedim(-3, -1).cpu().numpy().astype(np.float32)
