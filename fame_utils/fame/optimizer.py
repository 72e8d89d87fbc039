"""The LOTS optimiser (paper Eq. 3): L∞-normalised descent steps on any per-sample loss, with early stopping and a trace.

It knows nothing of tasks: the loss says what is asked (see :mod:`fame_utils.fame.losses`), and no map is made here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from fame_utils._checks import check_batch, check_length
from fame_utils.fame.config import FameConfig

__all__ = ["LossFn", "SampleLoss", "OptimizationTrace", "optimize"]

_GRAD_GUARD = 1e-12
_MEMORY_FORMATS = {"channels_last": torch.channels_last, "nchw": torch.contiguous_format}


class SampleLoss:
    """A per-sample loss whose targets follow the samples: row r of ``x`` is scored as sample ``index[r]``.

    FAME's losses hold one target per original sample (a class, a location, a reference embedding).
    When early stopping drops samples from the batch, :func:`optimize` passes the original indices of
    the rows still moving, so each row is scored against its own target.

    Args:
        score: ``(x, index) → (B',)`` with ``index`` a CPU long tensor of original sample indices, one per row.
        samples: number of samples the loss holds targets for (0 = any: the same target for every sample).
        what: the targets' name in error messages, e.g. ``"classes"``.
    """

    def __init__(self, score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], samples: int, what: str = "targets") -> None:
        self.score = score
        self.samples = samples
        self.what = what

    def __call__(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """One loss per row of ``x``; ``index`` defaults to all samples in order (``x`` must then hold all of them)."""
        if index is None:
            if self.samples:
                check_length(x.shape[0], self.samples, self.what)
            index = torch.arange(x.shape[0])
        return self.score(x, index.cpu())


LossFn = Callable[[torch.Tensor], torch.Tensor] | SampleLoss
"""A per-sample loss, (B, C, H, W) → (B,). A plain callable always receives the whole batch (it cannot know
which sample a row is); a :class:`SampleLoss` receives only the rows still moving, with their indices."""


@dataclass
class OptimizationTrace:
    """Records what :func:`optimize` does, for plots of the loss curve and intermediate perturbations.

    Args:
        snapshot_steps: step counts n at which to keep a copy of x̄ (0 = the input itself).

    After the run, ``losses`` is a (n_steps + 1, B) tensor: row t is each sample's loss before step t;
    the last row is the loss after the final step (one extra forward, made only when tracing). A sample
    that stopped early keeps its frozen loss. ``snapshots[n]`` is x̄ after n steps for every requested
    n ≤ ``config.iterations``: once every sample is frozen nothing moves any more, so the requested steps
    after the last one taken hold the final x̄. ``steps`` is the number of steps taken.
    """

    snapshot_steps: Sequence[int] = ()
    losses: torch.Tensor | None = None
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    steps: int = 0

    def _store(self, step: int, x: torch.Tensor) -> None:
        if step in self.snapshot_steps:
            self.snapshots[step] = x.detach().clone()

    def _store_frozen(self, taken: int, iterations: int, x: torch.Tensor) -> None:
        """The requested steps in (taken, iterations] when the run ended early: every sample is frozen at ``x``."""
        for step in self.snapshot_steps:
            if taken < step <= iterations:
                self.snapshots[step] = x.detach().clone()


def optimize(
    image: torch.Tensor,
    loss_fn: LossFn,
    config: FameConfig | None = None,
    *,
    progress: bool = False,
    trace: OptimizationTrace | None = None,
) -> torch.Tensor:
    """Minimise ``loss_fn`` with LOTS steps (Eq. 3) and return the perturbed input x̄.

    x̄ ← x̄ − η · g / max(max|g|, 1e-12) with g = ∂L/∂x̄ and the max over (C, H, W) of each sample.
    With ``config.epsilon`` set, each sample's loss is checked before every step: a sample with
    L < ε is frozen and leaves the batch, so every sample ends exactly as if it ran alone.
    Under ``paper_faithful`` the whole batch stops once mean(L) < ε instead (frozen samples count
    with their frozen loss). Always on: a sample whose input gradient is exactly zero and whose step
    left it unchanged is frozen too, since no later step can move it.

    Args:
        image: the tensor to perturb, (B, C, H, W); it is not modified.
        loss_fn: per-sample loss. A :class:`SampleLoss` is evaluated on the still-active rows with their
            sample indices; a plain callable on the whole batch every step.
        config: hyperparameters (default :class:`FameConfig`).
        progress: show a ``tqdm.auto`` progress bar (``TQDM_DISABLE=1`` silences it).
        trace: an :class:`OptimizationTrace` to fill with the loss curve and snapshots.

    Returns:
        x̄, detached, same shape, dtype and device as ``image``.

    Works under an enclosing ``torch.no_grad()``: the gradient steps enable gradients themselves.

    Raises:
        ValueError: bad image, or ``loss_fn`` not returning shape (B',).
    """
    config = config or FameConfig()
    check_batch(image, "image")
    precision = _autocast_dtype(config, image.device)
    x = image.detach().clone(memory_format=_MEMORY_FORMATS[config.memory_format])
    batch = x.shape[0]
    active = torch.arange(batch, device=x.device)
    current = torch.full((batch,), float("nan"), dtype=x.dtype, device=x.device)
    rows: list[torch.Tensor] = []
    if trace is not None:
        trace._store(0, x)
    steps = range(config.iterations)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="FAME", leave=False)
    taken = 0
    for step in steps:
        with torch.enable_grad(), torch.autocast(x.device.type, dtype=precision, enabled=precision is not None):
            grad, losses = _gradient(loss_fn, x, active)
        current[active] = losses
        rows.append(current.clone())
        keep = _still_active(losses, current, config)
        if not bool(keep.any()):
            break
        active, grad = active[keep], grad[keep]
        moved = _lots_step(x, active, grad, config)
        active = active[moved]
        taken = step + 1
        if trace is not None:
            trace._store(taken, x)
        if len(active) == 0:
            break
    if trace is not None:
        with torch.autocast(x.device.type, dtype=precision, enabled=precision is not None):
            _finish_trace(trace, loss_fn, x, active, current, rows, taken)
        trace._store_frozen(taken, config.iterations, x)
    return x.contiguous()


def _autocast_dtype(config: FameConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``config.precision`` on ``device`` (None = plain fp32)."""
    if config.precision == "fp32":
        return None
    if config.precision == "fp16" and device.type != "cuda":
        raise ValueError(f"FameConfig.precision='fp16' needs a CUDA device, the image is on {device}; use 'bf16' on CPU.")
    return torch.bfloat16 if config.precision == "bf16" else torch.float16


def _gradient(loss_fn: LossFn, x: torch.Tensor, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """∂L/∂x̄ and L (detached) of the active rows, in the order of ``active``."""
    if isinstance(loss_fn, SampleLoss):
        x_in = x.index_select(0, active) if len(active) < x.shape[0] else x
        x_in = x_in.detach().requires_grad_(True)
        losses = _evaluate(loss_fn, x_in, active).float()
        (grad,) = torch.autograd.grad(losses.sum(), x_in)
        return grad, losses.detach()
    x_in = x.detach().requires_grad_(True)
    losses = _evaluate(loss_fn, x_in, None).float()
    (grad,) = torch.autograd.grad(losses[active].sum(), x_in)
    return grad.index_select(0, active), losses.detach()[active]


def _active_losses(loss_fn: LossFn, x: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """L of the active rows (no gradient is taken)."""
    if isinstance(loss_fn, SampleLoss):
        return _evaluate(loss_fn, x.index_select(0, active), active).detach()
    return _evaluate(loss_fn, x, None).detach()[active]


def _evaluate(loss_fn: LossFn, x: torch.Tensor, active: torch.Tensor | None) -> torch.Tensor:
    losses = loss_fn(x, active) if isinstance(loss_fn, SampleLoss) else loss_fn(x)
    if not isinstance(losses, torch.Tensor) or losses.shape != (x.shape[0],):
        shape = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
        raise ValueError(f"loss_fn must return one loss per sample, shape ({x.shape[0]},); got {shape}. Do not sum or average over the batch.")
    return losses


def _still_active(losses: torch.Tensor, current: torch.Tensor, config: FameConfig) -> torch.Tensor:
    """Boolean mask over the active rows of those that take the next step (docs/decisions.md#early-stopping)."""
    if config.epsilon is None:
        return torch.ones_like(losses, dtype=torch.bool)
    if config.paper_faithful:
        return torch.full_like(losses, bool(current.mean() >= config.epsilon), dtype=torch.bool)
    return losses >= config.epsilon


def _lots_step(x: torch.Tensor, active: torch.Tensor, grad: torch.Tensor, config: FameConfig) -> torch.Tensor:
    """One Eq. (3) step of the ``active`` rows of ``x``, in place, with the per-sample L∞-normalised gradient.

    Returns:
        Boolean mask over ``active``: False for rows that can never move again (zero gradient, step left them unchanged).
    """
    dims = tuple(range(1, grad.ndim))
    scale = grad.abs().amax(dim=dims, keepdim=True).clamp_min(_GRAD_GUARD)
    moving = grad.ne(0).flatten(1).any(dim=1)
    step = grad.mul_(config.step_size).div_(scale)
    if len(active) == x.shape[0] and config.clamp is None:
        x.sub_(step)
        return moving
    before = x.index_select(0, active)
    stepped = before - step
    if config.clamp is not None:
        stepped = stepped.clamp_(*config.clamp)
        moving = moving | stepped.ne(before).flatten(1).any(dim=1)
    x.index_copy_(0, active, stepped)
    return moving


def _finish_trace(
    trace: OptimizationTrace,
    loss_fn: LossFn,
    x: torch.Tensor,
    active: torch.Tensor,
    current: torch.Tensor,
    rows: list[torch.Tensor],
    taken: int,
) -> None:
    if taken == len(rows):
        if len(active) > 0:
            with torch.no_grad():
                current[active] = _active_losses(loss_fn, x, active)
        rows.append(current.clone())
    trace.losses = torch.stack(rows) if rows else current[None].clone()
    trace.steps = taken
