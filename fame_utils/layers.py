"""Find a layer by name and read its output with hooks that are always removed.

Knows nothing of FAME, attribution maps or the networks it is given.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = [
    "resolve_layer",
    "layer_name",
    "LayerCapture",
    "capture_layer",
    "forward_to_layer",
    "probe_layer",
    "LayerNotReachedError",
    "LayerOutputError",
    "LayerReusedError",
]


class LayerNotReachedError(RuntimeError):
    """The forward pass finished without running the hooked layer."""


class LayerOutputError(TypeError):
    """The hooked layer returns something other than one tensor (e.g. a tuple)."""


class LayerReusedError(ValueError):
    """The hooked module runs more than once in one forward pass, so "its output" is ambiguous."""


class _StopForward(Exception):
    """Raised inside a hook to end the forward pass at the hooked layer."""


def resolve_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    """Return the sub-module ``layer`` of ``model``.

    Args:
        model: the network.
        layer: a module inside ``model`` or its dotted name as in ``model.named_modules()``
            (``"layer4.2"``; ``"layer4[-1]"`` and ``"features[-2]"`` index into sequential containers).

    Raises:
        ValueError: unknown name (the message lists the closest names) or a module that is not part of
            ``model``.
    """
    if isinstance(layer, nn.Module):
        if not any(module is layer for module in model.modules()):
            raise ValueError("the given layer module is not a sub-module of the model; pass the model's own layer or its dotted name.")
        return layer
    if not isinstance(layer, str):
        raise TypeError(f"layer must be an nn.Module or a dotted name, got {type(layer).__name__}")
    module = model
    for part in _split_name(layer):
        child = _child(module, part)
        if child is None:
            raise ValueError(_unknown_layer_message(model, layer))
        module = child
    return module


def layer_name(model: nn.Module, layer: nn.Module | str) -> str:
    """Return the dotted ``named_modules`` name of ``layer`` inside ``model``."""
    target = resolve_layer(model, layer)
    for name, module in model.named_modules():
        if module is target:
            return name
    raise ValueError("layer not found in model")  # unreachable: resolve_layer checked membership


def _split_name(name: str) -> list[str]:
    parts: list[str] = []
    for token in name.replace("]", "").replace("[", ".").split("."):
        if token:
            parts.append(token)
    if not parts:
        raise ValueError("layer name is empty; pass a dotted name such as 'layer4.2'.")
    return parts


def _child(module: nn.Module, part: str) -> nn.Module | None:
    if part.lstrip("-").isdigit() and isinstance(module, (nn.Sequential, nn.ModuleList)):
        index = int(part)
        if -len(module) <= index < len(module):
            return module[index]
        return None
    return getattr(module, part, None) if part in dict(module.named_children()) else None


def _unknown_layer_message(model: nn.Module, name: str) -> str:
    names = [n for n, _ in model.named_modules() if n]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f" Closest names: {', '.join(close)}." if close else f" Some valid names: {', '.join(names[:8])}."
    return f"unknown layer {name!r} in {type(model).__name__}.{hint}"


@dataclass
class LayerCapture:
    """Holds the output of the hooked layer from the most recent forward pass."""

    output: torch.Tensor | None = None
    calls: int = field(default=0)

    def get(self) -> torch.Tensor:
        """Return the captured output or raise :class:`LayerNotReachedError`."""
        if self.output is None:
            raise LayerNotReachedError("the forward pass never reached the hooked layer; check the layer name and the input.")
        return self.output


@contextmanager
def capture_layer(model: nn.Module, layer: nn.Module | str) -> Iterator[LayerCapture]:
    """Record the output of ``layer`` on every forward pass inside the ``with`` block.

    The hook is removed when the block ends, also when it ends with an exception.
    """
    module = resolve_layer(model, layer)
    capture = LayerCapture()

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        capture.output = output
        capture.calls += 1

    handle = module.register_forward_hook(hook)
    try:
        yield capture
    finally:
        handle.remove()


def forward_to_layer(model: nn.Module, layer: nn.Module | str, inputs: torch.Tensor) -> torch.Tensor:
    """Run ``model`` on ``inputs`` up to ``layer`` and return that layer's output.

    Nothing after ``layer`` is computed: a hook raises as soon as the layer has produced its output,
    and is removed on every path.

    Raises:
        LayerNotReachedError: if the forward pass finishes without running ``layer``.
    """
    module = resolve_layer(model, layer)
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        _check_tensor_output(model, module, output)
        captured.append(output)
        raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        model(inputs)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise LayerNotReachedError(f"the forward pass of {type(model).__name__} never reached the requested layer.")
    return captured[0]


def _check_tensor_output(model: nn.Module, module: nn.Module, output: object) -> None:
    if not isinstance(output, torch.Tensor):
        raise LayerOutputError(
            f"layer {layer_name(model, module)!r} returns a {type(output).__name__}, not one tensor; "
            "choose a layer whose output is a single feature map (e.g. its parent or a child)."
        )


def probe_layer(model: nn.Module, layer: nn.Module | str, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One full forward without gradients: ``(layer output, model output)``, after checking the layer is usable.

    Raises:
        LayerOutputError: the layer returns a tuple or other non-tensor (raised inside the forward; the hook is removed).
        LayerReusedError: the module runs more than once per forward (e.g. one ReLU shared by several blocks).
        LayerNotReachedError: the forward never runs the layer.
    """
    module = resolve_layer(model, layer)
    outputs: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        _check_tensor_output(model, module, output)
        outputs.append(output)

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            result = model(inputs)
    finally:
        handle.remove()
    if not outputs:
        raise LayerNotReachedError(f"the forward pass of {type(model).__name__} never reached layer {layer_name(model, module)!r}.")
    if len(outputs) > 1:
        raise LayerReusedError(
            f"layer {layer_name(model, module)!r} runs {len(outputs)} times in one forward pass (one module reused), so its "
            "output is ambiguous; choose a module that runs once, e.g. the enclosing block."
        )
    return outputs[0], result
