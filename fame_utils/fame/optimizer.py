"""The LOTS optimiser (paper Eq. 3): L∞-normalised descent steps on any per-sample loss, with early stopping and a trace.

It knows nothing of tasks: the loss says what is asked (see :mod:`fame_utils.fame.losses`), and no map is made here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from fame_utils._checks import check_batch
from fame_utils.fame.config import FameConfig

__all__ = ["LossFn", "OptimizationTrace", "optimize"]

LossFn = Callable[[torch.Tensor], torch.Tensor]
"""A per-sample loss: maps a batch (B, C, H, W) to one loss per sample, shape (B,)."""

_GRAD_GUARD = 1e-12


@dataclass
class OptimizationTrace:
    """Records what :func:`optimize` does, for plots of the loss curve and intermediate perturbations.

    Args:
        snapshot_steps: step counts n at which to keep a copy of x̄ (0 = the input itself).

    After the run, ``losses`` is a (n_steps + 1, B) tensor: row t is each sample's loss before step t;
    the last row is the loss after the final step (one extra forward, made only when tracing). A sample
    that stopped early keeps its frozen loss. ``snapshots[n]`` is x̄ after n steps (for requested n that
    were reached), ``steps`` the number of steps taken.
    """

    snapshot_steps: Sequence[int] = ()
    losses: torch.Tensor | None = None
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    steps: int = 0

    def _store(self, step: int, x: torch.Tensor) -> None:
        if step in self.snapshot_steps:
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
    Under ``paper_faithful`` the whole batch stops once mean(L) < ε instead.

    Args:
        image: the tensor to perturb, (B, C, H, W); it is not modified.
        loss_fn: per-sample loss, (B', C, H, W) → (B',), evaluated on the still-active samples.
        config: hyperparameters (default :class:`FameConfig`).
        progress: show a ``tqdm.auto`` progress bar (``TQDM_DISABLE=1`` silences it).
        trace: an :class:`OptimizationTrace` to fill with the loss curve and snapshots.

    Returns:
        x̄, detached, same shape, dtype and device as ``image``.

    Raises:
        ValueError: bad image, or ``loss_fn`` not returning shape (B',).
    """
    config = config or FameConfig()
    check_batch(image, "image")
    x = image.detach().clone()
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
        x_active = x[active].requires_grad_(True)
        losses = _evaluate(loss_fn, x_active)
        current[active] = losses.detach()
        rows.append(current.clone())
        keep = _still_active(losses.detach(), config)
        if not bool(keep.any()):
            break
        (grad,) = torch.autograd.grad(losses[keep].sum(), x_active)
        moving = active[keep]
        x[moving] = _lots_step(x[moving], grad[keep], config)
        active = moving
        taken = step + 1
        if trace is not None:
            trace._store(taken, x)
    if trace is not None:
        _finish_trace(trace, loss_fn, x, active, current, rows, taken)
    return x.detach()


def _evaluate(loss_fn: LossFn, x: torch.Tensor) -> torch.Tensor:
    losses = loss_fn(x)
    if not isinstance(losses, torch.Tensor) or losses.shape != (x.shape[0],):
        shape = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
        raise ValueError(f"loss_fn must return one loss per sample, shape ({x.shape[0]},); got {shape}. Do not sum or average over the batch.")
    return losses


def _still_active(losses: torch.Tensor, config: FameConfig) -> torch.Tensor:
    """Boolean mask of samples that take the next step (docs/decisions.md#early-stopping)."""
    if config.epsilon is None:
        return torch.ones_like(losses, dtype=torch.bool)
    if config.paper_faithful:
        return torch.full_like(losses, bool(losses.mean() >= config.epsilon), dtype=torch.bool)
    return losses >= config.epsilon


def _lots_step(x: torch.Tensor, grad: torch.Tensor, config: FameConfig) -> torch.Tensor:
    """One Eq. (3) step with the per-sample L∞-normalised gradient."""
    scale = grad.abs().amax(dim=tuple(range(1, grad.ndim)), keepdim=True).clamp_min(_GRAD_GUARD)
    stepped = x - config.step_size * grad / scale
    if config.clamp is not None:
        stepped = stepped.clamp(*config.clamp)
    return stepped


def _finish_trace(
    trace: OptimizationTrace,
    loss_fn: LossFn,
    x: torch.Tensor,
    active: torch.Tensor,
    current: torch.Tensor,
    rows: list[torch.Tensor],
    taken: int,
) -> None:
    if taken == len(rows) and len(active) > 0:
        with torch.no_grad():
            current[active] = _evaluate(loss_fn, x[active]).detach()
        rows.append(current.clone())
    trace.losses = torch.stack(rows) if rows else current[None].clone()
    trace.steps = taken
