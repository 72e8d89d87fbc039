"""Theoretical receptive fields: every input pixel that can influence a location, found by probing a positive linear copy.

It knows nothing of attribution maps, cells' mass, tables or plotting.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from fame_utils._checks import check_inside, model_device
from fame_utils.layers import capture_layer, forward_to_layer, resolve_layer
from fame_utils.locality.cells import Location

__all__ = ["ReceptiveField", "linearised_copy", "stage_supports", "unclipped_sizes", "theoretical_receptive_field", "receptive_field_size"]

PROBE_VALUE = 1000.0
"""The constant probe input: large and positive, so affine input scaling inside ``forward`` (and any functional ReLU
after it) stays positive."""


@dataclass(frozen=True)
class ReceptiveField:
    """Pixel box ``rows [r0, r1) × cols [c0, c1)`` that can influence one location."""

    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def height(self) -> int:
        """Rows covered."""
        return self.r1 - self.r0

    @property
    def width(self) -> int:
        """Columns covered."""
        return self.c1 - self.c0


_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.Dropout, nn.Dropout2d)


def _is_activation(module: nn.Module) -> bool:
    return type(module).__module__ == nn.modules.activation.__name__ or "swish" in type(module).__name__.lower()


class _SupportGradient(torch.autograd.Function):
    """Identity forward; backward keeps only *where* the gradient is non-zero (1 there, 0 elsewhere).

    In the positive linear copy no gradient can cancel, so this loses nothing about the support and
    stops gradients from underflowing over dozens of layers (edge pixels of a deep field otherwise
    receive ~1e-60 of the centre's gradient).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return (grad != 0).to(grad.dtype)


def _binarise_output(_module: nn.Module, _inputs: tuple, output: object) -> object:
    return _SupportGradient.apply(output) if isinstance(output, torch.Tensor) else output


def linearised_copy(model: nn.Module) -> nn.Module:
    """A float32 copy in which every path from input to output has a positive weight.

    Activations and norms become identities, max-pools become average pools of the same geometry,
    convolutions and linear layers get the constant weight ``1/fan_in`` and zero bias, and every other
    parameter its absolute value. Every leaf module's output gradient is reduced to its support.
    """
    probe = copy.deepcopy(model).float().eval()
    for parent in list(probe.modules()):
        for name, child in list(parent.named_children()):
            replacement = _linear_replacement(child)
            if replacement is not None:
                setattr(parent, name, replacement)
    with torch.no_grad():
        for module in probe.modules():
            if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
                module.weight.fill_(1.0 / module.weight[0].numel())
                if module.bias is not None:
                    module.bias.zero_()
            else:
                for parameter in module.parameters(recurse=False):
                    parameter.abs_()
    for module in probe.modules():
        if not list(module.children()):
            module.register_forward_hook(_binarise_output)
    return probe



def _linear_replacement(module: nn.Module) -> nn.Module | None:
    if _is_activation(module) or isinstance(module, _NORMS):
        return nn.Identity()
    if isinstance(module, nn.MaxPool2d):
        if type(module) is not nn.MaxPool2d or module.dilation not in (1, (1, 1)):
            raise ValueError(f"cannot linearise {type(module).__name__} (custom forward or dilation); use a plain nn.MaxPool2d.")
        return nn.AvgPool2d(module.kernel_size, module.stride, module.padding, module.ceil_mode, count_include_pad=True)
    return None



def stage_supports(
    probe: nn.Module, stages: Sequence[str], input_shape: Sequence[int], locations: Sequence[Location] | None = None, probe_value: float = PROBE_VALUE
) -> list[ReceptiveField]:
    """Receptive-field boxes, clipped to the input, of one location per stage from a single forward pass of a
    :func:`linearised_copy` (``locations=None``: each stage's central location)."""
    x = torch.full((1, *input_shape), probe_value, device=model_device(probe), requires_grad=True)
    with contextlib.ExitStack() as stack:
        captures = [stack.enter_context(capture_layer(probe, stage)) for stage in stages]
        forward_to_layer(probe, stages[-1], x)
    boxes = []
    for index, capture in enumerate(captures):
        activation = capture.get()
        row, col = locations[index] if locations is not None else (activation.shape[2] // 2, activation.shape[3] // 2)
        check_inside(torch.tensor([row]), torch.tensor([col]), activation.shape[-2:])
        (gradient,) = torch.autograd.grad(activation[0, :, row, col].sum(), x, retain_graph=index < len(captures) - 1)
        boxes.append(_support_box((gradient[0] != 0).any(0).cpu()))
    return boxes


def unclipped_sizes(probe: nn.Module, stages: Sequence[str], input_shape: Sequence[int], max_scale: int = 8) -> list[tuple[int | None, int | None]]:
    """Per stage, the unclipped field ``(height, width)`` of an interior location (None for a side still clipped).

    Rows and columns are probed separately on a tall (``max_scale·H × W``) and a wide (``H × max_scale·W``) input,
    whose central location's field is not clipped along the long side.
    """
    channels, height, width = (int(v) for v in input_shape)
    tall = stage_supports(probe, stages, (channels, height * max_scale, width))
    wide = stage_supports(probe, stages, (channels, height, width * max_scale))
    return [(t.height if 0 < t.r0 and t.r1 < height * max_scale else None, w.width if 0 < w.c0 and w.c1 < width * max_scale else None)
            for t, w in zip(tall, wide)]


def _support_box(support: torch.Tensor) -> ReceptiveField:
    rows = torch.nonzero(support.any(1)).flatten()
    cols = torch.nonzero(support.any(0)).flatten()
    if rows.numel() == 0:
        raise ValueError("no input pixel influences this location in the linearised copy; the model probably applies a nonlinearity outside modules on negative values.")
    return ReceptiveField(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def theoretical_receptive_field(
    model: nn.Module,
    layer: str,
    input_shape: Sequence[int],
    location: Location | None = None,
    probe_value: float = PROBE_VALUE,
) -> ReceptiveField:
    """Every input pixel that can influence ``layer``'s location, clipped to the image.

    Probing instead of walking kernel sizes: a copy of the model is made linear with positive weights
    (activations and norms → identity, max-pool → average pool, conv/linear weights = 1/fan_in), so no
    path can cancel or be switched off, and the gradient of the location's channel sum w.r.t. a constant
    input is non-zero exactly on its receptive field. This follows residual branches, depthwise
    convolutions, asymmetric "same" padding and cropping exactly as the module graph runs them.

    Args:
        model: the network (not modified).
        layer: dotted name of the layer (resolved on the copy).
        input_shape: ``(C, H, W)`` of the preprocessed input.
        location: ``(row, col)``; default the central location.
        probe_value: the constant probe input (see :data:`PROBE_VALUE`).
    """
    resolve_layer(model, layer)
    return stage_supports(linearised_copy(model), [layer], input_shape, None if location is None else [location], probe_value)[0]


def receptive_field_size(model: nn.Module, layer: str, input_shape: Sequence[int], max_scale: int = 8) -> tuple[int | None, int | None]:
    """Unclipped theoretical receptive field ``(height, width)`` in pixels of an interior location of ``layer``.

    Deep layers see more than the whole image; this number says how much more (see :func:`unclipped_sizes`).
    """
    resolve_layer(model, layer)
    return unclipped_sizes(linearised_copy(model), [layer], input_shape, max_scale)[0]
