"""Where a network's stages sit: the grid of a layer's output and its depth in convolutions.

One forward pass with hooks that are always removed; it knows nothing of cells, gradients or tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fame_utils._checks import model_device
from fame_utils.layers import forward_to_layer, resolve_layer

__all__ = ["layer_grid", "conv_depth", "stage_shapes"]


def layer_grid(model: nn.Module, layer: nn.Module | str, input_shape: Sequence[int]) -> tuple[int, int]:
    """Spatial size ``(h, w)`` of ``layer``'s output for an input of shape ``(C, H, W)``."""
    parameter = next(model.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    with torch.no_grad():
        output = forward_to_layer(model, layer, torch.zeros(1, *input_shape, device=model_device(model), dtype=dtype))
    if output.ndim != 4:
        raise ValueError(f"layer output has shape {tuple(output.shape)}; a spatial (B, C, h, w) map is needed.")
    return int(output.shape[2]), int(output.shape[3])


def conv_depth(model: nn.Module, layer: nn.Module | str, input_shape: Sequence[int]) -> int:
    """Number of convolutions executed before ``layer``'s output exists (its depth in conv layers)."""
    return stage_shapes(model, [layer], input_shape)[0][0]


def stage_shapes(model: nn.Module, stages: Sequence[nn.Module | str], input_shape: Sequence[int]) -> list[tuple[int, tuple[int, int]]]:
    """``(conv depth, (h, w))`` of every stage output, from one forward pass."""
    modules = [resolve_layer(model, stage) for stage in stages]
    seen: dict[int, tuple[int, tuple[int, int]]] = {}
    calls = [0]

    def count(*_: object) -> None:
        calls[0] += 1

    def record(index: int):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            if index not in seen and isinstance(output, torch.Tensor) and output.ndim == 4:
                seen[index] = (calls[0], (int(output.shape[2]), int(output.shape[3])))
        return hook

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    handles += [module.register_forward_hook(record(i)) for i, module in enumerate(modules)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
    missing = [stages[i] for i in range(len(stages)) if i not in seen]
    if missing:
        raise ValueError(f"stages {missing} produced no spatial (B, C, h, w) output in the forward pass.")
    return [seen[i] for i in range(len(stages))]
