"""Inference copies of the shipped networks: every per-channel affine layer folded into the convolution before it.

In eval mode a BatchNorm (and dlib's ``affine`` layer) is y = a_c·x + b_c per channel, so a convolution followed by
it is one convolution with weights a_c·W and bias a_c·bias + b_c: the same function, up to float rounding, with
one operation less forward and backward. EfficientNet-Lite's symmetric TensorFlow "same" paddings also move into
the convolution (an explicit zero-pad copy less); the asymmetric ones of its stride-2 layers stay. Measured on a
2-core CPU (forward + input gradient, batch 8, channels_last): about a quarter of a FAME step is these layers.
SFace's PReLUs become :class:`InputGradientPReLU`: the same outputs and bitwise the same input gradients, but its
backward is one multiplication (PyTorch's PReLU backward also computes the slope gradient and took 40 % of a step).

The copy keeps every module name (a folded layer becomes ``nn.Identity`` at the same name, whose output is the
folded convolution's, i.e. the original layer's output), so a layer named in the original — a CAM layer, a stage —
names the same activation in the copy. Networks of other families are used as they are
(docs/decisions.md#inference-copies).
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_linear_bn_eval

from .dlib_resnet import ChannelAffine, DlibResNet
from .efficientnet import EfficientNetLite
from .sface import SFace

__all__ = ["InputGradientPReLU", "fold_batchnorm", "foldable", "inference_copy", "matching_layer"]

_HOOK_DICTS = (
    "_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks",
)

_Pair = tuple[nn.Module, str, str]


class _PReLUInputGradient(torch.autograd.Function):
    """PReLU whose backward multiplies by the saved slope (1 where x > 0, else a_c) and gives no slope gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:  # noqa: D102
        weight = weight.to(x.dtype)
        negative = weight.view(1, -1, *[1] * (x.ndim - 2))
        positive = torch.sign(x).clamp_(min=0)
        ctx.save_for_backward((1 - positive).mul_(negative).add_(positive))  # exactly 1 or a_c
        return F.prelu(x, weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        (slope,) = ctx.saved_tensors
        return grad * slope, None


class InputGradientPReLU(nn.Module):
    """``nn.PReLU`` (one slope per channel) for inference copies: input gradients only, one multiplication each.

    Shares the slope parameter of the PReLU it replaces. Without gradients it is plain ``F.prelu``.
    """

    def __init__(self, prelu: nn.PReLU) -> None:
        super().__init__()
        self.weight = prelu.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _PReLUInputGradient.apply(x, self.weight)
        return F.prelu(x, self.weight.to(x.dtype))


def foldable(model: nn.Module) -> bool:
    """Whether :func:`fold_batchnorm` knows ``model``'s family (EfficientNet-Lite, SFace, dlib ResNet)."""
    return type(model) in _PAIRS


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A new eval-mode copy of ``model`` with its affine layers folded (see the module docstring); no hooks are copied.

    Raises:
        ValueError: ``model`` or one of its modules is in training mode (BatchNorm must use its running statistics),
            or its family is not one :func:`foldable` knows.
    """
    if not foldable(model):
        raise ValueError(f"fold_batchnorm knows EfficientNet-Lite, SFace and dlib ResNet, not {type(model).__name__}.")
    if _training(model):
        raise ValueError("fold_batchnorm needs a model in eval mode (BatchNorm must use its running statistics); call model.eval().")
    folded = _copy_without_hooks(model)
    with torch.no_grad():
        for parent, conv_name, affine_name in _PAIRS[type(folded)](folded):
            _fold_pair(parent, conv_name, affine_name)
        if isinstance(folded, SFace):
            _fold_sface_head(folded)
    _replace_prelus(folded)
    _move_symmetric_padding(folded)
    return folded.eval()


_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, nn.Module]]" = weakref.WeakKeyDictionary()


def inference_copy(model: nn.Module) -> nn.Module:
    """The folded copy of ``model`` to run forward passes and input gradients on, or ``model`` itself.

    ``model`` itself when its family is not :func:`foldable` or any of its modules is in training mode. The copy is
    made once and made again when any parameter or buffer of ``model`` changes (in place or by ``.to()``), so an
    explanation never runs on stale weights.
    """
    if not foldable(model) or _training(model):
        return model
    state = _state_key(model)
    cached = _CACHE.get(model)
    if cached is None or cached[0] != state:
        cached = (state, fold_batchnorm(model))
        _CACHE[model] = cached
    return cached[1]


def matching_layer(model: nn.Module, folded: nn.Module, layer: nn.Module | str) -> nn.Module | str:
    """``layer`` of ``model`` as it is in ``folded`` (a name passes through; a module is looked up by its name).

    Raises:
        ValueError: ``layer`` is a module that is not part of ``model``.
    """
    if folded is model or isinstance(layer, str):
        return layer
    for name, module in model.named_modules():
        if module is layer:
            return dict(folded.named_modules())[name]
    raise ValueError(f"layer {type(layer).__name__} is not a module of the {type(model).__name__} being explained.")


def _training(model: nn.Module) -> bool:
    return any(module.training for module in model.modules())


def _state_key(model: nn.Module) -> tuple:
    """Identity, storage and version of every parameter and buffer (inference tensors cannot change in place)."""
    tensors = [*model.parameters(), *model.buffers()]
    return tuple((id(t), t.data_ptr(), -1 if t.is_inference() else t._version, t.device) for t in tensors)


def _copy_without_hooks(model: nn.Module) -> nn.Module:
    """A deep copy whose modules carry no hooks (a CAM object's hooks on ``model`` must not fire on the copy)."""
    memo: dict[int, object] = {}
    for module in model.modules():
        for attribute in _HOOK_DICTS:
            hooks = getattr(module, attribute, None)
            if hooks is not None:
                memo[id(hooks)] = type(hooks)()
    return copy.deepcopy(model, memo)


def _affine(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) with layer(x) = a_c·x + b_c per channel (eval-mode BatchNorm or dlib affine)."""
    if isinstance(layer, ChannelAffine):
        return layer.weight.detach(), layer.bias.detach()
    scale = layer.weight / torch.sqrt(layer.running_var + layer.eps)
    return scale.detach(), (layer.bias - layer.running_mean * scale).detach()


def _fold_pair(parent: nn.Module, conv_name: str, affine_name: str) -> None:
    """conv(x) → affine in place: W ← a·W, bias ← a·bias + b; the affine layer becomes ``nn.Identity``."""
    conv = getattr(parent, conv_name)
    scale, shift = _affine(getattr(parent, affine_name))
    conv.weight.mul_(scale.reshape(-1, *[1] * (conv.weight.ndim - 1)))
    if conv.bias is None:
        conv.bias = nn.Parameter(shift.clone(), requires_grad=conv.weight.requires_grad)
    else:
        conv.bias.mul_(scale).add_(shift)
    setattr(parent, affine_name, nn.Identity())


def _fold_sface_head(model: SFace) -> None:
    """SFace's BatchNorm2d before the flatten into its Linear, and the BatchNorm1d after the Linear into it."""
    scale, shift = _affine(model.output_bn)
    spatial = model.fc.in_features // scale.numel()
    model.fc.bias += model.fc.weight @ shift.repeat_interleave(spatial)
    model.fc.weight *= scale.repeat_interleave(spatial)[None]
    model.output_bn = nn.Identity()
    model.fc = fuse_linear_bn_eval(model.fc, model.embedding_bn)
    model.embedding_bn = nn.Identity()


def _replace_prelus(model: nn.Module) -> None:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.PReLU:
                setattr(parent, name, InputGradientPReLU(child))


def _move_symmetric_padding(model: nn.Module) -> None:
    """A convolution's explicit symmetric zero padding (EfficientNet-Lite's static "same") moved into the convolution."""
    for module in model.modules():
        pad = getattr(module, "static_padding", None)
        if isinstance(module, nn.Conv2d) and isinstance(pad, nn.ZeroPad2d) and module.padding == (0, 0):
            left, right, top, bottom = pad.padding
            if left == right and top == bottom:
                module.padding = (top, left)
                module.static_padding = nn.Identity()


def _efficientnet_pairs(model: EfficientNetLite) -> Iterator[_Pair]:
    yield model.stem, "0", "1"
    for block in model.stages.modules():
        for conv_name, bn_name in (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")):
            if isinstance(getattr(block, conv_name, None), nn.Conv2d):
                yield block, conv_name, bn_name
    yield model.head, "0", "1"


def _sface_pairs(model: SFace) -> Iterator[_Pair]:
    for block in model.features:
        yield block, "conv", "bn"


def _dlib_pairs(model: DlibResNet) -> Iterator[_Pair]:
    yield model.stem, "conv", "scale"
    for module in model.modules():
        if isinstance(getattr(module, "scale1", None), ChannelAffine):
            yield module, "conv1", "scale1"
            yield module, "conv2", "scale2"


_PAIRS: dict[type, Callable[[nn.Module], Iterator[_Pair]]] = {
    EfficientNetLite: _efficientnet_pairs,
    SFace: _sface_pairs,
    DlibResNet: _dlib_pairs,
}
