"""FAME: Feature Activation Map Explanation (Zhang & Günther, arXiv 2605.12017).

FAME asks "which pixels must change to drive this quantity down?" and answers it by running the LOTS
optimiser (Eq. 3) on a task loss and reading the accumulated perturbation |x̄ − x| as an attribution
(Eq. 4). The loss encodes the question (§3.4 of ``fame-method.md``):

* one feature-map location k of a layer: L_a = ‖a[k](x̄)‖₁ (Eq. 5) → :func:`explain_locations`;
* a class logit: L_cls = z_o (|z_o| when ``paper_faithful``) → :func:`explain_class`;
* face verification: L₊ = s(φ(x̄), φ_ref) and L₋ = 1 − s (Eq. 6) → :func:`explain_verification`.

The building blocks are public so notebooks can show each step: :func:`optimize` (with an optional
:class:`OptimizationTrace`), :func:`to_gray`, :func:`perturbation_map`, :func:`blur_map`,
:func:`normalize_map` and :func:`attribution` (the whole chain).

FAME perturbs exactly the tensor the model takes (§3.6); maps are computed in that same space.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from fame_utils.layers import forward_to_layer, resolve_layer

__all__ = [
    "FameConfig",
    "OptimizationTrace",
    "LossFn",
    "optimize",
    "to_gray",
    "perturbation_map",
    "blur_map",
    "normalize_map",
    "attribution",
    "location_loss",
    "class_loss",
    "class_objective",
    "cosine_similarity",
    "verification_loss",
    "feature_grid",
    "all_locations",
    "explain_locations",
    "explain_class",
    "explain_verification",
    "sweep_sigma",
    "blur_sweep",
    "iteration_sweep",
    "step_size_sweep",
    "GRAY_WEIGHTS",
    "NORMALIZATIONS",
    "PAPER_CLASS_EPSILON",
]

LossFn = Callable[[torch.Tensor], torch.Tensor]
"""A per-sample loss: maps a batch (B, C, H, W) to one loss per sample, shape (B,)."""

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
"""Luma weights applied in the stored channel order (B/G/R for BGR face crops, §15.10)."""
NORMALIZATIONS = ("minmax", "max")
PAPER_CLASS_EPSILON = 1e-3
"""Early-stop threshold on |z_o| used by the authors' original classification script (§3.3)."""
_GRAD_GUARD = 1e-12
_NORM_GUARD = 1e-8


@dataclass(frozen=True)
class FameConfig:
    """FAME hyperparameters (defaults = the paper's: η = 1/255, T = 500, blur 49/7.7, no clamp).

    Args:
        step_size: η, the L∞ length of one step (in the units of the perturbed tensor).
        iterations: T, the maximum number of steps.
        epsilon: early-stop threshold ε on the loss (None = never stop early).
        clamp: ``(low, high)`` to clip x̄ after each step, or None.
        blur_kernel: Gaussian kernel size b (an even size is raised to the next odd number); None = no blur.
        blur_sigma: Gaussian σ.
        normalization: ``"minmax"`` (default, reference code) or ``"max"`` (the paper's text).
        paper_faithful: reproduce the original scripts (Decision 1): |z_o| with ε = 1e-3 for
            classification when ``epsilon`` is None, batch-mean early stopping, ``"max"`` normalisation.
            Read the effective values from :attr:`effective_normalization`, :attr:`early_stop_rule`
            and :meth:`class_epsilon`, or all at once from :meth:`effective_settings`.
    """

    step_size: float = 1 / 255
    iterations: int = 500
    epsilon: float | None = None
    clamp: tuple[float, float] | None = None
    blur_kernel: int | None = 49
    blur_sigma: float = 7.7
    normalization: str = "minmax"
    paper_faithful: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.step_size, (int, float)) and math.isfinite(self.step_size) and self.step_size > 0):
            raise ValueError(f"FameConfig.step_size must be a positive finite number, got {self.step_size!r}.")
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 0:
            raise ValueError(f"FameConfig.iterations must be an int >= 0, got {self.iterations!r}.")
        if self.epsilon is not None and not (isinstance(self.epsilon, (int, float)) and math.isfinite(self.epsilon)):
            raise ValueError(f"FameConfig.epsilon must be None or a finite number, got {self.epsilon!r}.")
        if self.clamp is not None:
            if len(self.clamp) != 2 or not self.clamp[0] < self.clamp[1]:
                raise ValueError(f"FameConfig.clamp must be None or (low, high) with low < high, got {self.clamp!r}.")
            object.__setattr__(self, "clamp", (float(self.clamp[0]), float(self.clamp[1])))
        if self.blur_kernel is not None:
            if isinstance(self.blur_kernel, bool) or not isinstance(self.blur_kernel, int) or self.blur_kernel < 1:
                raise ValueError(f"FameConfig.blur_kernel must be None or a positive int, got {self.blur_kernel!r}.")
            object.__setattr__(self, "blur_kernel", self.blur_kernel | 1)
        if not (isinstance(self.blur_sigma, (int, float)) and math.isfinite(self.blur_sigma) and self.blur_sigma > 0):
            raise ValueError(f"FameConfig.blur_sigma must be a positive number, got {self.blur_sigma!r}.")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"FameConfig.normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}.")

    @property
    def effective_normalization(self) -> str:
        """The normalisation actually applied: ``"max"`` under ``paper_faithful``, else :attr:`normalization`."""
        return "max" if self.paper_faithful else self.normalization

    @property
    def early_stop_rule(self) -> str:
        """``"batch-mean"`` (one mean over the batch stops all samples) under ``paper_faithful``, else ``"per-sample"``."""
        return "batch-mean" if self.paper_faithful else "per-sample"

    def class_epsilon(self) -> float | None:
        """ε used by the classification loss: :attr:`epsilon`, or 1e-3 under ``paper_faithful`` when unset."""
        if self.epsilon is None and self.paper_faithful:
            return PAPER_CLASS_EPSILON
        return self.epsilon

    def effective_settings(self) -> dict[str, object]:
        """Every setting as it is applied, for side-by-side tables of the two modes."""
        return {
            "step_size": self.step_size,
            "iterations": self.iterations,
            "epsilon": self.epsilon,
            "class_epsilon": self.class_epsilon(),
            "class_loss": "|z_o|" if self.paper_faithful else "z_o",
            "early_stop_rule": self.early_stop_rule,
            "clamp": self.clamp,
            "blur_kernel": self.blur_kernel,
            "blur_sigma": self.blur_sigma,
            "normalization": self.effective_normalization,
            "paper_faithful": self.paper_faithful,
        }

    def replace(self, **changes: object) -> "FameConfig":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


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
    _check_batch(image, "image")
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
    """Boolean mask of samples that take the next step (early-stop rule of §3.3)."""
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


def to_gray(image: torch.Tensor) -> torch.Tensor:
    """Luma 0.2989·c₀ + 0.587·c₁ + 0.114·c₂ in the stored channel order: (B, 3, H, W) → (B, H, W).

    A single-channel batch (B, 1, H, W) is returned as (B, H, W).
    """
    _check_rank(image, 4, "image")
    if image.shape[1] == 1:
        return image[:, 0]
    if image.shape[1] != 3:
        raise ValueError(f"to_gray needs 1 or 3 channels, got {image.shape[1]} (shape {tuple(image.shape)}).")
    weights = torch.tensor(GRAY_WEIGHTS, dtype=image.dtype, device=image.device)
    return torch.einsum("bchw,c->bhw", image, weights)


def perturbation_map(image: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """Eq. (4) before smoothing: d = |Gray(x̄) − Gray(x)|, pre-scaled by its max (guard 1e-12): (B, H, W)."""
    _check_pair(image, perturbed)
    difference = (to_gray(perturbed) - to_gray(image)).abs()
    return difference / difference.amax(dim=(1, 2), keepdim=True).clamp_min(_GRAD_GUARD)


def blur_map(maps: torch.Tensor, kernel: int | None = 49, sigma: float = 7.7) -> torch.Tensor:
    """Gaussian blur of (B, H, W) maps with reflect padding (torchvision); ``kernel=None`` returns them unchanged.

    An even kernel is raised to the next odd size.

    Raises:
        ValueError: kernel too large for reflect padding (kernel // 2 must be < H and < W).
    """
    _check_rank(maps, 3, "maps")
    if kernel is None:
        return maps
    kernel = int(kernel) | 1
    if kernel // 2 >= min(maps.shape[-2:]):
        raise ValueError(f"blur kernel {kernel} is too large for {tuple(maps.shape[-2:])} maps (reflect padding needs kernel // 2 < size); use a smaller kernel or None.")
    return gaussian_blur(maps[:, None], [kernel, kernel], [float(sigma), float(sigma)])[:, 0]


def normalize_map(maps: torch.Tensor, mode: str = "minmax") -> torch.Tensor:
    """Per-map normalisation to [0, 1]: ``minmax`` (d − min)/(max − min + 1e-8) or ``max`` d/(max + 1e-8).

    An all-zero map stays all zero (no NaN).
    """
    _check_rank(maps, 3, "maps")
    if mode not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {mode!r}; use one of {NORMALIZATIONS}.")
    high = maps.amax(dim=(1, 2), keepdim=True)
    if mode == "max":
        return maps / (high + _NORM_GUARD)
    low = maps.amin(dim=(1, 2), keepdim=True)
    return (maps - low) / (high - low + _NORM_GUARD)


def attribution(image: torch.Tensor, perturbed: torch.Tensor, config: FameConfig | None = None) -> torch.Tensor:
    """FAME map from x and x̄: gray → subtract → abs → pre-scale → blur → normalise, (B, H, W) in [0, 1]."""
    config = config or FameConfig()
    maps = perturbation_map(image, perturbed)
    maps = blur_map(maps, config.blur_kernel, config.blur_sigma)
    return normalize_map(maps, config.effective_normalization)


def location_loss(model: nn.Module, layer: nn.Module | str, locations: Sequence[tuple[int, int]]) -> LossFn:
    """L_a (Eq. 5): sample b's loss is Σ_c |a_b[c, i_b, j_b]| at its own location (i_b, j_b) = ``locations[b]``.

    The forward pass stops at ``layer``; its hook is removed on every path.
    """
    resolve_layer(model, layer)
    rows, cols = _location_indices(locations)

    def loss(x: torch.Tensor) -> torch.Tensor:
        _check_length(x, len(rows), "locations")
        activation = forward_to_layer(model, layer, x)
        if activation.ndim != 4:
            raise ValueError(f"layer output must be a (B, C, h, w) feature map for location losses, got shape {tuple(activation.shape)}.")
        _check_inside(rows, cols, activation.shape[-2:])
        picked = activation[torch.arange(x.shape[0], device=activation.device), :, rows.to(activation.device), cols.to(activation.device)]
        return picked.abs().sum(dim=1)

    return loss


def class_loss(model: nn.Module, classes: Sequence[int] | torch.Tensor, absolute: bool = False) -> LossFn:
    """L_cls: the raw logit z_o of class ``classes[b]`` for sample b (|z_o| if ``absolute``, the paper-faithful loss)."""
    targets = torch.as_tensor(classes, dtype=torch.long).reshape(-1)

    def loss(x: torch.Tensor) -> torch.Tensor:
        _check_length(x, len(targets), "classes")
        logits = model(x)
        if logits.ndim != 2:
            raise ValueError(f"class_loss needs (B, num_classes) logits, got shape {tuple(logits.shape)}.")
        if int(targets.min()) < 0 or int(targets.max()) >= logits.shape[1]:
            raise ValueError(f"class indices must lie in [0, {logits.shape[1] - 1}], got {targets.tolist()}.")
        picked = logits[torch.arange(x.shape[0], device=logits.device), targets.to(logits.device)]
        return picked.abs() if absolute else picked

    return loss


def cosine_similarity(a: torch.Tensor, b: torch.Tensor, detach_norms: bool = False) -> torch.Tensor:
    """Eq. (2): s = aᵀb / (‖a‖₂‖b‖₂) along the last axis.

    With ``detach_norms`` the denominator is treated as a constant, so gradients flow through the dot
    product only (footnote 4); the value is unchanged.
    """
    norms = a.norm(dim=-1) * b.norm(dim=-1)
    if detach_norms:
        norms = norms.detach()
    return (a * b).sum(dim=-1) / norms.clamp_min(_GRAD_GUARD)


def verification_loss(
    model: nn.Module,
    reference_embedding: torch.Tensor,
    mode: Literal["similar", "dissimilar"] = "similar",
    detach_norms: bool = False,
) -> LossFn:
    """L₊ = s(φ(x̄), φ_ref) (``"similar"``) or L₋ = 1 − s (``"dissimilar"``), Eq. (6).

    Args:
        model: maps the perturbed tensor to an embedding (B, D) (not L2-normalised beforehand; s normalises).
        reference_embedding: frozen φ_ref, (D,) or (B, D).
        mode: which map the loss produces.
        detach_norms: see :func:`cosine_similarity`.
    """
    if mode not in ("similar", "dissimilar"):
        raise ValueError(f"mode must be 'similar' or 'dissimilar', got {mode!r}.")
    reference = reference_embedding.detach()
    if reference.ndim not in (1, 2):
        raise ValueError(f"reference_embedding must be (D,) or (B, D), got shape {tuple(reference.shape)}.")

    def loss(x: torch.Tensor) -> torch.Tensor:
        if reference.ndim == 2 and reference.shape[0] != 1:
            _check_length(x, reference.shape[0], "reference embeddings")
        embedding = model(x)
        if embedding.ndim != 2 or embedding.shape[-1] != reference.shape[-1]:
            raise ValueError(f"model embedding shape {tuple(embedding.shape)} does not match reference embedding shape {tuple(reference.shape)}.")
        similarity = cosine_similarity(embedding, reference.to(embedding.device), detach_norms=detach_norms)
        return similarity if mode == "similar" else 1 - similarity

    return loss


def feature_grid(model: nn.Module, layer: nn.Module | str, image: torch.Tensor) -> tuple[int, int]:
    """(h, w) of ``layer``'s feature map for ``image`` (one forward without gradients, stopped at the layer)."""
    single = _single_image(image)
    with torch.no_grad():
        activation = forward_to_layer(model, layer, single.to(_model_device(model, single)))
    if activation.ndim != 4:
        raise ValueError(f"layer output must be a (B, C, h, w) feature map, got shape {tuple(activation.shape)}.")
    return int(activation.shape[-2]), int(activation.shape[-1])


def all_locations(grid: tuple[int, int]) -> list[tuple[int, int]]:
    """Every (row, col) of an h×w grid in row-major order: index = row·w + col."""
    return [(row, col) for row in range(grid[0]) for col in range(grid[1])]


def explain_locations(
    model: nn.Module,
    layer: nn.Module | str,
    image: torch.Tensor,
    locations: Sequence[tuple[int, int]] | None = None,
    config: FameConfig | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> torch.Tensor:
    """FAME map of each feature-map location k = (row, col) of ``layer`` for one image (L_a, Eq. 5).

    The image is replicated once per location, in chunks of ``batch_size``; each copy gets its own
    location. Because early stopping is per sample, a location's map is the same alone or in a batch.

    Args:
        model: network in eval mode taking the tensor being perturbed.
        layer: module or dotted name (``"blocks[-1]"``); the forward stops there.
        image: (C, H, W) or (1, C, H, W).
        locations: ``(row, col)`` pairs; default all locations, row-major.
        config: hyperparameters (default :class:`FameConfig`).
        batch_size: locations per optimisation batch.
        progress: show a progress bar over chunks.

    Returns:
        (L, H, W) maps in [0, 1], in the order of ``locations``.

    Raises:
        ValueError: more than one image, a location outside the grid, an unknown layer, a bad image.
    """
    config = config or FameConfig()
    _check_model(model)
    resolve_layer(model, layer)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    single = _single_image(image).to(_model_device(model, image))
    grid = feature_grid(model, layer, single)
    chosen = all_locations(grid) if locations is None else [tuple(int(v) for v in loc) for loc in locations]
    if not chosen:
        raise ValueError("locations is empty; pass at least one (row, col) or None for all locations.")
    rows, cols = _location_indices(chosen)
    _check_inside(rows, cols, grid)
    chunks = range(0, len(chosen), batch_size)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="locations", leave=False)
    maps = []
    for start in chunks:
        part = chosen[start : start + batch_size]
        batch = single.expand(len(part), -1, -1, -1).clone()
        perturbed = optimize(batch, location_loss(model, layer, part), config)
        maps.append(attribution(batch, perturbed, config))
    return torch.cat(maps)


def class_objective(model: nn.Module, classes: Sequence[int] | torch.Tensor, config: FameConfig) -> tuple[LossFn, FameConfig]:
    """The loss and run settings FAME uses to explain a class under ``config``.

    Returns:
        (z_o, ``config``) by default; (|z_o|, ``config`` with ε = :meth:`FameConfig.class_epsilon`) when ``paper_faithful``.
    """
    return class_loss(model, classes, absolute=config.paper_faithful), config.replace(epsilon=config.class_epsilon())


def explain_class(
    model: nn.Module,
    images: torch.Tensor,
    classes: int | Sequence[int] | torch.Tensor,
    config: FameConfig | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """FAME map for class ``classes[b]`` of each image: minimise z_o (|z_o| with ε = 1e-3 when ``paper_faithful``).

    Args:
        model: classifier in eval mode taking ``images`` as they are (e.g. the normalised tensor).
        images: (B, C, H, W) or one (C, H, W) image.
        classes: one class index per image (the ground-truth class of the protocol).
        config: hyperparameters; :meth:`FameConfig.class_epsilon` gives the ε applied.
        progress: show a progress bar over iterations.

    Returns:
        (B, H, W) maps in [0, 1].
    """
    config = config or FameConfig()
    _check_model(model)
    batch = _as_batch(images).to(_model_device(model, images))
    targets = torch.as_tensor(classes, dtype=torch.long).reshape(-1)
    _check_length(batch, len(targets), "classes")
    loss, run_config = class_objective(model, targets, config)
    perturbed = optimize(batch, loss, run_config, progress=progress)
    return attribution(batch, perturbed, config)


def explain_verification(
    model: nn.Module,
    image: torch.Tensor,
    reference: torch.Tensor,
    config: FameConfig | None = None,
    modes: Sequence[str] = ("similar", "dissimilar"),
    detach_norms: bool = False,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """FAME maps of ``image`` against the frozen embedding of ``reference`` (one side of each pair).

    e₊ (``"similar"``) minimises s(φ(x̄), φ_ref) and marks regions supporting the match; e₋
    (``"dissimilar"``) minimises 1 − s and marks regions pushing the pair apart. φ_ref is computed once
    without gradients. The reference code and the original LOTS utility stop at ε = 0.01; pass
    ``FameConfig(epsilon=0.01)`` for that (impostor pairs with s < 0.01 then give empty e₊ maps, §15.11).

    Args:
        model: embedding network in eval mode, (B, C, H, W) → (B, D).
        image: the explained images, (B, C, H, W) or (C, H, W); only they are perturbed.
        reference: the other image of each pair, same batch size (or one image for all).
        config: hyperparameters.
        modes: which maps to compute.
        detach_norms: cosine similarity with frozen norms (footnote 4 variant).
        progress: show progress bars over iterations.

    Returns:
        ``{"similar": (B, H, W), "dissimilar": (B, H, W)}`` (only the requested modes).
    """
    config = config or FameConfig()
    _check_model(model)
    unknown = [mode for mode in modes if mode not in ("similar", "dissimilar")]
    if unknown or not modes:
        raise ValueError(f"modes must be a non-empty subset of ('similar', 'dissimilar'), got {tuple(modes)!r}.")
    device = _model_device(model, image)
    batch = _as_batch(image, "image").to(device)
    references = _as_batch(reference, "reference").to(device)
    if references.shape[0] not in (1, batch.shape[0]):
        raise ValueError(f"reference has {references.shape[0]} images but image has {batch.shape[0]}; pass one reference per image (or a single one).")
    with torch.no_grad():
        reference_embedding = model(references).detach()
    maps = {}
    for mode in modes:
        loss = verification_loss(model, reference_embedding, mode, detach_norms=detach_norms)
        maps[mode] = attribution(batch, optimize(batch, loss, config, progress=progress), config)
    return maps


def sweep_sigma(kernel: int) -> float:
    """σ that tracks the blur kernel in the blur sweep (§7): σ = max(k / 6.37, 0.5); 49 → 7.7."""
    return max(kernel / 6.37, 0.5)


def blur_sweep(image: torch.Tensor, perturbed: torch.Tensor, kernels: Sequence[int], config: FameConfig | None = None) -> dict[int, torch.Tensor]:
    """Maps of one optimisation run for several blur kernels (σ = :func:`sweep_sigma`); blur is post-processing only.

    Returns:
        ``{kernel: (B, H, W) map}``.
    """
    config = config or FameConfig()
    return {k: attribution(image, perturbed, config.replace(blur_kernel=k, blur_sigma=sweep_sigma(k))) for k in kernels}


def iteration_sweep(
    image: torch.Tensor, loss_fn: LossFn, counts: Sequence[int], config: FameConfig | None = None, progress: bool = False
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Maps after each of ``counts`` iterations from ONE run of max(counts) steps, early stopping off.

    Without early stopping the run's state after n steps is exactly a run of n iterations, so one run
    with snapshots replaces len(counts) runs (Fig. 6a).

    Returns:
        ``({n: (B, H, W) map}, {n: x̄ after n steps})``.
    """
    config = (config or FameConfig()).replace(iterations=max(counts), epsilon=None)
    trace = OptimizationTrace(snapshot_steps=tuple(counts))
    optimize(image, loss_fn, config, progress=progress, trace=trace)
    return {n: attribution(image, trace.snapshots[n], config) for n in counts}, dict(trace.snapshots)


def step_size_sweep(
    image: torch.Tensor, loss_fn: LossFn, step_sizes: Sequence[float], config: FameConfig | None = None, progress: bool = False
) -> tuple[dict[float, torch.Tensor], dict[float, torch.Tensor]]:
    """One run per step size η (early stopping off, Fig. 6b).

    Returns:
        ``({η: (B, H, W) map}, {η: x̄})``.
    """
    config = (config or FameConfig()).replace(epsilon=None)
    perturbed = {eta: optimize(image, loss_fn, config.replace(step_size=eta), progress=progress) for eta in step_sizes}
    return {eta: attribution(image, x_bar, config) for eta, x_bar in perturbed.items()}, perturbed


def _check_rank(tensor: torch.Tensor, rank: int, name: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}.")
    if tensor.ndim != rank:
        raise ValueError(f"{name} must have {rank} dimensions, got shape {tuple(tensor.shape)}.")


def _check_batch(tensor: torch.Tensor, name: str) -> None:
    _check_rank(tensor, 4, name)
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {tensor.dtype}.")
    if tensor.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch.")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values.")


def _check_pair(image: torch.Tensor, perturbed: torch.Tensor) -> None:
    _check_batch(image, "image")
    _check_batch(perturbed, "perturbed")
    if image.shape != perturbed.shape:
        raise ValueError(f"image {tuple(image.shape)} and perturbed {tuple(perturbed.shape)} must have the same shape.")


def _as_batch(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    if isinstance(images, torch.Tensor) and images.ndim == 3:
        images = images[None]
    _check_batch(images, name)
    return images


def _single_image(image: torch.Tensor) -> torch.Tensor:
    batch = _as_batch(image, "image")
    if batch.shape[0] != 1:
        raise ValueError(f"explain_locations explains one image at a time, got a batch of {batch.shape[0]}; loop over the images.")
    return batch


def _check_length(x: torch.Tensor, expected: int, what: str) -> None:
    if x.shape[0] != expected:
        raise ValueError(f"batch has {x.shape[0]} samples but {expected} {what} were given; pass exactly one per sample.")


def _location_indices(locations: Sequence[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        pairs = [(int(row), int(col)) for row, col in locations]
    except (TypeError, ValueError) as error:
        raise ValueError(f"locations must be a sequence of (row, col) integer pairs: {error}") from error
    if not pairs:
        raise ValueError("locations is empty; pass at least one (row, col).")
    indices = torch.tensor(pairs, dtype=torch.long)
    return indices[:, 0], indices[:, 1]


def _check_inside(rows: torch.Tensor, cols: torch.Tensor, grid: Sequence[int]) -> None:
    height, width = int(grid[0]), int(grid[1])
    outside = (rows < 0) | (rows >= height) | (cols < 0) | (cols >= width)
    if bool(outside.any()):
        bad = [(int(r), int(c)) for r, c in zip(rows[outside], cols[outside])]
        raise ValueError(f"locations {bad} lie outside the {height}x{width} feature map; rows must be in [0, {height - 1}] and columns in [0, {width - 1}].")


def _check_model(model: nn.Module) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if model.training:
        raise ValueError("model is in training mode (BatchNorm/dropout would couple or randomise samples); call model.eval() first.")


def _model_device(model: nn.Module, fallback: torch.Tensor) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else fallback.device
