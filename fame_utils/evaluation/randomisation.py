"""Cascading model randomisation (Adebayo et al. 2018): re-initialise a network from the output down, one block group
at a time, and measure how far each explanation method's maps move away from the trained network's maps.

* :func:`block_groups`: the network's parameterised modules split at its stage outputs, listed top-down.
* :func:`randomised_copy`: a deep copy with the top ``count`` groups re-initialised (seeded; the model is untouched).
* :func:`map_similarity`: Spearman rank correlation and SSIM of two batches of maps, per image.
* :func:`cascading_randomisation` / :func:`summarise_randomisation`: the whole check and its table with bootstrap
  intervals over images.

Re-initialisation calls each module's own ``reset_parameters`` under a seed fixed per group, so stage k + 1 keeps the
random weights of stage k and only adds one group. BatchNorm layers of a re-initialised group are reset like a freshly
built network (γ = 1, β = 0, running mean 0, running variance 1) and the copy stays in eval mode, so the random
layers see no statistics learned on data; BatchNorm layers of groups still trained keep their trained statistics.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import nn
from tqdm.auto import tqdm

from fame_utils.baselines.cam import EmptyMapWarning
from fame_utils.metrics.stats import bootstrap_ci

__all__ = ["OUTPUT_GROUP", "Explainer", "block_groups", "randomised_copy", "map_similarity", "cascading_randomisation", "summarise_randomisation"]

#: Name of the group holding every parameterised module after the last stage output (the classifier or embedding head).
OUTPUT_GROUP = "output"

Explainer = Callable[[nn.Module], torch.Tensor]
"""``explainer(model)`` → ``(B, H, W)`` maps of the fixed images (and targets) the explainer was built for."""


def _has_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False))


def _stage_of(name: str, stages: Sequence[str]) -> int | None:
    for index, stage in enumerate(stages):
        if name == stage or name.startswith(stage + "."):
            return index
    return None


def block_groups(model: nn.Module, stages: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The modules that hold parameters or buffers, grouped by the stage whose output they feed, listed top-down.

    Modules are taken in registration order: every module up to and inside stage ``i`` (and after stage ``i − 1``)
    belongs to group ``stages[i]``; modules after the last stage form the group :data:`OUTPUT_GROUP` (omitted when
    empty). The first entry is therefore the group nearest the output.

    Args:
        model: the network.
        stages: dotted names of its stage outputs, shallow → deep (``ModelSpec.stages``).

    Raises:
        ValueError: no stages, a stage that is not a module of ``model``, or stages out of registration order.
    """
    names = dict(model.named_modules())
    missing = [stage for stage in stages if stage not in names]
    if not stages or missing:
        raise ValueError(f"stages must name modules of the model, shallow → deep; got {list(stages)} (unknown: {missing}).")
    groups: list[list[str]] = [[] for _ in range(len(stages) + 1)]
    last_entered = -1
    for name, module in model.named_modules():
        stage = _stage_of(name, stages)
        if stage is not None and stage < last_entered:
            raise ValueError(f"stage {stages[stage]!r} comes after {stages[last_entered]!r} in the model; list stages shallow → deep.")
        if stage is not None:
            last_entered = stage
        if _has_state(module):
            groups[last_entered + 1 if stage is None else stage].append(name)
    labelled = list(zip([*stages, OUTPUT_GROUP], groups))
    return [(label, members) for label, members in reversed(labelled) if members]


def _reset(module: nn.Module, name: str) -> None:
    if not hasattr(module, "reset_parameters"):
        raise ValueError(f"module {name!r} ({type(module).__name__}) has parameters but no reset_parameters(); it cannot be re-initialised.")
    module.reset_parameters()
    if hasattr(module, "reset_running_stats"):
        module.reset_running_stats()


def randomised_copy(model: nn.Module, groups: Sequence[tuple[str, Sequence[str]]], count: int, seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with the first ``count`` groups of ``groups`` (top-down) re-initialised.

    Group ``g`` is re-initialised under ``torch.manual_seed(seed + g)`` (the global RNG is restored afterwards), so
    the same seed gives the same weights and stage ``count + 1`` differs from stage ``count`` in one group only.
    ``count = 0`` returns an identical copy. The copy keeps ``model``'s training/eval mode and device.

    Raises:
        ValueError: ``count`` outside ``0 … len(groups)``, or a module without ``reset_parameters``.
    """
    if not 0 <= count <= len(groups):
        raise ValueError(f"count must be between 0 and {len(groups)} (the number of groups), got {count}.")
    randomised = copy.deepcopy(model)
    modules = dict(randomised.named_modules())
    with torch.random.fork_rng(devices=[]):
        for index, (_label, members) in enumerate(groups[:count]):
            torch.manual_seed(seed + index)
            for name in members:
                _reset(modules[name], name)
    return randomised


def _minmax(values: np.ndarray) -> np.ndarray:
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def map_similarity(reference: torch.Tensor, other: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-image Spearman rank correlation over pixels and SSIM of two ``(B, H, W)`` map batches.

    SSIM (``skimage.metrics.structural_similarity``) compares min-max-normalised maps with ``data_range=1``. A
    constant map has no ranking: its Spearman correlation is reported as 0 (no agreement), not NaN.

    Raises:
        ValueError: the batches differ in shape or are not 3-D.
    """
    if reference.shape != other.shape or reference.dim() != 3:
        raise ValueError(f"maps must both be (B, H, W) of one shape, got {tuple(reference.shape)} and {tuple(other.shape)}.")
    rhos, ssims = [], []
    for first, second in zip(reference.detach().cpu().double().numpy(), other.detach().cpu().double().numpy()):
        constant = np.ptp(first) == 0 or np.ptp(second) == 0
        rhos.append(0.0 if constant else float(spearmanr(first.ravel(), second.ravel())[0]))
        ssims.append(float(structural_similarity(_minmax(first), _minmax(second), data_range=1.0)))
    return np.array(rhos), np.array(ssims)


def cascading_randomisation(
    model: nn.Module,
    groups: Sequence[tuple[str, Sequence[str]]],
    explainers: Mapping[str, Explainer],
    counts: Sequence[int],
    seed: int = 0,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[int, dict[str, torch.Tensor]]]:
    """Maps of every method at every randomisation stage and their similarity to the trained network's maps.

    All-zero CAM maps are expected once layers are random; their warnings are silenced here and such maps score
    Spearman 0 (see :func:`map_similarity`).

    Args:
        model: trained network in eval mode (never modified).
        groups: :func:`block_groups` of ``model``.
        explainers: ``{method: explainer(model) → (B, H, W)}``, all on the same images.
        counts: numbers of top groups to re-initialise, e.g. ``range(len(groups) + 1)``; 0 is always added.
        seed: re-initialisation seed (:func:`randomised_copy`).
        progress: show a progress bar over stages.

    Returns:
        ``(records, maps)``: one row per stage × method × image (``randomised``, ``last group``, ``method``,
        ``image``, ``spearman``, ``ssim``) and ``maps[count][method]``.

    Raises:
        ValueError: no explainers, or a count outside ``0 … len(groups)``.
    """
    if not explainers:
        raise ValueError("pass at least one explainer.")
    stages = sorted({0, *counts})
    if stages[-1] > len(groups) or stages[0] < 0:
        raise ValueError(f"counts must lie in 0 … {len(groups)} (the number of groups), got {list(counts)}.")
    maps: dict[int, dict[str, torch.Tensor]] = {}
    rows = []
    for count in tqdm(stages, desc="randomised groups", disable=not progress, leave=False):
        randomised = randomised_copy(model, groups, count, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmptyMapWarning)
            maps[count] = {method: explain(randomised).detach().cpu() for method, explain in explainers.items()}
        for method, stage_maps in maps[count].items():
            rhos, ssims = map_similarity(maps[0][method], stage_maps)
            last = groups[count - 1][0] if count else "none (trained)"
            rows += [{"randomised": count, "last group": last, "method": method, "image": i, "spearman": rho, "ssim": ssim}
                     for i, (rho, ssim) in enumerate(zip(rhos, ssims))]
    return pd.DataFrame(rows), maps


def summarise_randomisation(records: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Mean and 95 % bootstrap interval over images of each metric, per method and stage (long format).

    Columns: ``method``, ``randomised``, ``last group``, ``metric`` (``spearman`` / ``ssim``), ``mean``, ``low``, ``high``.
    """
    rows = []
    for (method, count, last), group in records.groupby(["method", "randomised", "last group"], sort=False):
        for metric in ("spearman", "ssim"):
            mean, low, high = bootstrap_ci(group[metric].to_numpy(), seed=seed)
            rows.append({"method": method, "randomised": count, "last group": last, "metric": metric, "mean": mean, "low": low, "high": high})
    return pd.DataFrame(rows)
