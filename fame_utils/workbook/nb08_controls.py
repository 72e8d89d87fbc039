"""Notebook 08: controls the paper does not run — the gradient-direction ablation, the model-randomisation sanity
check and "do e₊ and e₋ differ?".

* :func:`direction_ablation_maps`: FAME's loop with the step direction swapped (true LOTS direction, a random
  direction of the same L∞ length, the gradient's sign, the unnormalised gradient, a single step);
  :func:`ablation_records` / :func:`ablation_summary` score them.
* :func:`classifier_explainers` / :func:`verification_explainers`: the methods the cascading randomisation
  (:mod:`fame_utils.evaluation.randomisation`) re-runs on each randomised copy; :func:`randomisation_verdicts`,
  :func:`plot_randomisation` and :func:`randomisation_sheet` read and draw its result.
* :func:`pair_perturbations` / :func:`signed_map`: the e₊ and e₋ perturbations of a face pair and the signed
  variant e₊ − e₋ taken before normalisation; :func:`rank_by_steps` and :func:`deletion_effects` run the tests.
* :func:`claims_table`: the closing table, each verdict computed from the run's numbers.

Notebook-specific glue only: the methods live in :mod:`fame_utils.fame` and :mod:`fame_utils.baselines`, the
metrics in :mod:`fame_utils.metrics`, map sheets in :mod:`fame_utils.viz`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from scipy.stats import spearmanr, wilcoxon
from torch import nn
from tqdm.auto import tqdm

from fame_utils import viz
from fame_utils.baselines.cam import full_grad, grad_cam, gradcam_verification
from fame_utils.evaluation.randomisation import Explainer
from fame_utils.fame import (
    FameConfig, OptimizationTrace, attribution, blur_map, class_loss, explain_class, explain_verification, normalize_map, optimize, to_gray,
    verification_loss,
)
from fame_utils.metrics import bootstrap_ci, iou, road_curves
from fame_utils.metrics.masks import percentile_masks
from fame_utils.runtime import FORWARD_BATCH, fast_layout

__all__ = [
    "ABLATION_METRICS", "DIRECTIONS", "PASS_BELOW", "ablation_records", "ablation_summary", "claims_table", "classifier_explainers",
    "deletion_candidates", "deletion_effects", "direction_ablation_maps", "pair_batch", "pair_perturbations", "plot_randomisation", "plot_rank_by_steps",
    "randomisation_sheet", "randomisation_verdicts", "rank_by_steps", "region_deletion_effect", "signed_map", "spearman_per_pair",
    "verification_explainers",
]

#: The step directions compared by the ablation, in table order.
DIRECTIONS: tuple[str, ...] = ("LOTS (FAME)", "random direction", "gradient sign", "unnormalised gradient", "single step")
#: The ablation's metrics, as table columns: IoU with the box at τ = 0.5; the share of the crop the map marks at that τ
#: (IoU at a fixed τ rewards coverage when boxes are large, so it is read beside it); deletion (higher is better) and
#: insertion (lower is better) AUC.
IOU, AREA, DELETION, INSERTION = "iou@0.5", "area@0.5 (% of crop)", "deletion (black) AUC ↑", "insertion (black) AUC ↓"
ABLATION_METRICS: tuple[str, ...] = (IOU, AREA, DELETION, INSERTION)
#: A method passes the randomisation check when its mean Spearman correlation with the trained network's maps,
#: once every group is re-initialised, is below this (the maps lost at least half their rank agreement).
PASS_BELOW = 0.5
#: Face pairs optimised together (as :func:`~fame_utils.fame.explain_verification` batches them).
PAIR_BATCH = 8


def _direction(name: str, grad: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    dims = tuple(range(1, grad.ndim))
    if name in ("LOTS (FAME)", "single step"):
        return grad / grad.abs().amax(dim=dims, keepdim=True).clamp_min(1e-12)
    if name == "random direction":
        noise = torch.stack([torch.randn(grad.shape[1:], generator=generator) for generator in generators]).to(grad.device)
        return noise / noise.abs().amax(dim=dims, keepdim=True)
    if name == "gradient sign":
        return grad.sign()
    return grad


def _photo_generators(seed: int, count: int, first: int = 0) -> list[torch.Generator]:
    """One generator per photo, seeded by ``seed`` and the photo's position: its draws do not depend on its batch."""
    return [torch.Generator().manual_seed(int(np.random.SeedSequence([seed, first + i]).generate_state(1)[0])) for i in range(count)]


def _ablation_perturbation(model: nn.Module, images: torch.Tensor, classes: Sequence[int], name: str, config: FameConfig,
                           generators: Sequence[torch.Generator]) -> torch.Tensor:
    """x̄ after the steps of direction ``name`` on the class logits of one batch of photos (channels_last)."""
    loss = class_loss(model, list(classes))
    perturbed = fast_layout(images.detach().clone())
    for _ in range(1 if name == "single step" else config.iterations):
        perturbed.requires_grad_(True)
        with torch.enable_grad():
            grad, = torch.autograd.grad(loss(perturbed).sum(), perturbed)
        perturbed = (perturbed.detach() - config.step_size * _direction(name, grad, generators)).detach()
    return perturbed.contiguous()


def direction_ablation_maps(
    model: nn.Module, images: torch.Tensor, classes: Sequence[int], config: FameConfig, seed: int = 0, progress: bool = True,
    batch_size: int = FORWARD_BATCH,
) -> dict[str, torch.Tensor]:
    """FAME class maps ``(B, H, W)`` for each step direction of :data:`DIRECTIONS`.

    Every variant takes steps ``x̄ ← x̄ − η·d`` on the logit z_o (T = ``config.iterations``; one step for
    ``"single step"``) and is post-processed exactly as FAME (:func:`~fame_utils.fame.attribution`). The LOTS,
    random and sign directions have L∞ length η; the unnormalised gradient's length is η·max|∇|. Photos run
    ``batch_size`` at a time in channels_last; the random direction of each photo comes from its own generator
    (``seed`` and its position), so no map depends on the batch it ran in.

    Raises:
        ValueError: ``classes`` does not match the batch, or ``batch_size`` < 1.
    """
    if len(classes) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {len(classes)} classes; pass one class per image.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    maps = {}
    for name in tqdm(DIRECTIONS, desc="directions", disable=not progress, leave=False):
        starts = range(0, images.shape[0], batch_size)
        perturbed = torch.cat([_ablation_perturbation(model, images[i:i + batch_size], classes[i:i + batch_size], name, config,
                                                      _photo_generators(seed, len(classes[i:i + batch_size]), first=i)) for i in starts])
        maps[name] = attribution(images, perturbed, config).detach()
    return maps


def pair_perturbations(model: nn.Module, probes: torch.Tensor, gallery: torch.Tensor, steps: Sequence[int],
                       batch_size: int = PAIR_BATCH) -> dict[int, dict[str, torch.Tensor]]:
    """Perturbed probes x̄₊ (minimising s) and x̄₋ (minimising 1 − s) against the frozen gallery embeddings after each
    step count n of ``steps``: ``{n: {"similar": x̄₊, "dissimilar": x̄₋}}``.

    One FAME run of max(``steps``) steps per mode keeps x̄ as it passes each n (the same x̄ as a run of n steps); pairs
    run ``batch_size`` at a time (each pair's x̄ is the same in any batch).

    Raises:
        ValueError: ``steps`` is empty or holds a count below 1.
    """
    if not steps or min(steps) < 1:
        raise ValueError(f"steps must be one or more step counts ≥ 1, got {list(steps)}.")
    with torch.no_grad():
        reference = model(gallery).detach()
    config = FameConfig(iterations=max(steps))
    traces: dict[str, list[OptimizationTrace]] = {"similar": [], "dissimilar": []}
    for mode, runs in traces.items():
        for start in range(0, probes.shape[0], batch_size):
            runs.append(OptimizationTrace(snapshot_steps=tuple(steps)))
            optimize(probes[start:start + batch_size], verification_loss(model, reference[start:start + batch_size], mode), config, trace=runs[-1])
    return {n: {mode: torch.cat([run.snapshots[n] for run in runs]).contiguous() for mode, runs in traces.items()} for n in steps}


def signed_map(probes: torch.Tensor, perturbed: dict[str, torch.Tensor], config: FameConfig) -> torch.Tensor:
    """Signed variant: blurred |ΔGray| of e₊ minus that of e₋ before any normalisation, then min-max to [0, 1].

    High = the pixel moved more to lower the similarity than to raise it (support); low = opposition.
    """
    raw = {mode: blur_map((to_gray(x) - to_gray(probes)).abs(), config.blur_kernel, config.blur_sigma) for mode, x in perturbed.items()}
    return normalize_map(raw["similar"] - raw["dissimilar"], "minmax")


def spearman_per_pair(first: torch.Tensor, second: torch.Tensor) -> np.ndarray:
    """Spearman rank correlation of ``first[i]`` and ``second[i]`` over pixels, per pair ``(N,)``."""
    if first.shape != second.shape:
        raise ValueError(f"maps must have one shape, got {tuple(first.shape)} and {tuple(second.shape)}.")
    return np.array([spearmanr(a.flatten().cpu().numpy(), b.flatten().cpu().numpy())[0] for a, b in zip(first, second)])


def region_deletion_effect(model: nn.Module, gallery: torch.Tensor, probes: torch.Tensor, maps: torch.Tensor, share: float = 10.0) -> np.ndarray:
    """Similarity change ``s(gallery, probe with its top-share % pixels black) − s(gallery, probe)`` per pair ``(N,)``.

    Negative: the region supported the match; positive: it opposed it.
    """
    keep = percentile_masks(maps.detach().cpu(), [share]).deletion[:, 0].to(probes.device, probes.dtype)
    with torch.no_grad():
        reference = model(gallery)
        clean = torch.nn.functional.cosine_similarity(reference, model(probes), dim=1)
        deleted = torch.nn.functional.cosine_similarity(reference, model(probes * keep[:, None]), dim=1)
    return (deleted - clean).cpu().numpy()


def ablation_records(
    model: nn.Module, samples: Sequence[Any], maps: Mapping[str, torch.Tensor], normalizer: Any, percents: Sequence[float]
) -> pd.DataFrame:
    """One row per direction × photo: IoU at τ = 0.5 with the default box (NaN without a box), the percentage of the
    crop at or above τ = 0.5, and black-pixel deletion/insertion AUC of the ground-truth logit
    (:func:`~fame_utils.metrics.road_curves`).

    Args:
        model: the classifier (normalised input).
        samples: :class:`~fame_utils.evaluation.classification.PreparedSample` photos, in the order of the maps.
        maps: ``{direction: (B, H, W)}`` from :func:`direction_ablation_maps`.
        normalizer: [0, 1] pixels → network input.
        percents: deletion/insertion percentages.
    """
    device = next(iter(maps.values())).device
    pixels = torch.stack([s.pixels for s in samples]).to(device)
    classes = [s.target for s in samples]
    rows = []
    for name, direction_maps in maps.items():
        curves = road_curves(model, pixels, direction_maps, classes, normalizer, percents)
        deletion, insertion = curves.deletion_auc(), curves.insertion_auc()
        for i, sample in enumerate(samples):
            box = sample.boxes["default"]
            rows.append({"direction": name, "photo": sample.name, IOU: np.nan if box is None else 100 * iou(direction_maps[i], box, 0.5),
                         AREA: 100 * float((direction_maps[i] >= 0.5).float().mean()), DELETION: deletion[i], INSERTION: insertion[i]})
    return pd.DataFrame(rows)


def _wilcoxon_p(reference: np.ndarray, other: np.ndarray, minimum: int = 6) -> float:
    usable = np.isfinite(reference) & np.isfinite(other) & (reference != other)
    return float(wilcoxon(reference[usable], other[usable]).pvalue) if usable.sum() >= minimum else float("nan")


def ablation_summary(records: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per direction and metric: ``"mean [low, high]"`` (95 % bootstrap interval over photos) and the two-sided
    Wilcoxon signed-rank p against LOTS on the same photos (NaN with fewer than 6 non-tied photos)."""
    reference = records[records.direction == DIRECTIONS[0]]
    rows = []
    for name, group in records.groupby("direction", sort=False):
        row: dict[str, Any] = {"direction": name}
        for metric in ABLATION_METRICS:
            mean, low, high = bootstrap_ci(group[metric].dropna().to_numpy(), seed=seed)
            row[metric] = f"{mean:.2f} [{low:.2f}, {high:.2f}]"
            row[f"{metric} p (vs LOTS)"] = _wilcoxon_p(reference[metric].to_numpy(), group[metric].to_numpy())
        rows.append(row)
    return pd.DataFrame(rows).set_index("direction")


def classifier_explainers(spec: Any, images: torch.Tensor, classes: Sequence[int], config: FameConfig, normalizer: Any) -> dict[str, Explainer]:
    """FAME (class logit), Grad-CAM (at ``spec.target_layer``) and FullGrad (on the [0, 1] image) as ``explainer(model)``."""
    labels = list(classes)
    return {
        "FAME": lambda model: explain_class(model, images, labels, config),
        "Grad-CAM": lambda model: grad_cam(model, spec.target_layer, images, labels),
        "FullGrad": lambda model: full_grad(model, images, labels, normalizer),
    }


def verification_explainers(spec: Any, probes: torch.Tensor, gallery: torch.Tensor, config: FameConfig) -> dict[str, Explainer]:
    """FAME e₊ and the similarity Grad-CAM of each probe against its gallery image, as ``explainer(model)``.

    The gallery embedding is recomputed (without gradients) by the model being explained, so a randomised copy
    compares probe and gallery through the same random weights. FullGrad has no similarity target in the
    baselines, so it is absent here.
    """
    return {
        "FAME": lambda model: explain_verification(model, probes, gallery, config, modes=("similar",))["similar"],
        "Grad-CAM": lambda model: gradcam_verification(model, spec.target_layer, probes, gallery)["similar"],
    }


def randomisation_verdicts(summary: pd.DataFrame) -> dict[str, dict[str, float | bool]]:
    """Per method: mean Spearman and SSIM at the last (most randomised) stage, and ``passes`` (Spearman < :data:`PASS_BELOW`).

    Args:
        summary: :func:`~fame_utils.evaluation.randomisation.summarise_randomisation` of one network.
    """
    last = summary[summary.randomised == summary.randomised.max()]
    verdicts = {}
    for method, group in last.groupby("method", sort=False):
        means = group.set_index("metric")["mean"]
        verdicts[method] = {"spearman": float(means["spearman"]), "ssim": float(means["ssim"]), "passes": bool(means["spearman"] < PASS_BELOW)}
    return verdicts


def plot_randomisation(summaries: Mapping[str, pd.DataFrame]) -> Figure:
    """Similarity to the trained maps against the number of re-initialised groups: one panel per network × metric,
    one line per method (same colour in every panel) with its 95 % bootstrap band."""
    methods = list(dict.fromkeys(m for summary in summaries.values() for m in summary.method))
    colours = dict(zip(methods, plt.get_cmap("tab10").colors))
    fig, axes = plt.subplots(len(summaries), 2, figsize=(8, 2.8 * len(summaries)), squeeze=False, layout="constrained")
    for row, (network, summary) in enumerate(summaries.items()):
        for col, metric in enumerate(("spearman", "ssim")):
            ax = axes[row, col]
            for method, group in summary[summary.metric == metric].groupby("method", sort=False):
                ax.plot(group.randomised, group["mean"], marker="o", color=colours[method], label=method)
                ax.fill_between(group.randomised, group.low, group.high, color=colours[method], alpha=0.2)
            ax.axhline(0, color="0.6", lw=0.8)
            ax.set(title=f"{network}: {'Spearman ρ' if metric == 'spearman' else 'SSIM'}", xlabel="re-initialised groups (from the output down)",
                   ylabel="similarity to trained maps", ylim=(-0.3, 1.05))
    handles = [plt.Line2D([], [], color=colours[m], marker="o", label=m) for m in methods]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(methods))
    return fig


def randomisation_sheet(
    maps: Mapping[int, Mapping[str, torch.Tensor]], groups: Sequence[tuple[str, Sequence[str]]], background: Any, index: int = 0
) -> Figure:
    """Maps of image ``index`` per method (rows) and stage (columns, labelled by the deepest re-initialised group)."""
    columns = {count: "trained" if count == 0 else f"{count}: +{groups[count - 1][0]}" for count in sorted(maps)}
    methods = list(maps[0])
    cells = {(method, columns[count]): stage[method][index] for count, stage in maps.items() for method in methods}
    return viz.comparison_sheet(cells, methods, list(columns.values()), backgrounds=background)


def pair_batch(spec: Any, pairs: Sequence[Any], per_type: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The first ``per_type`` genuine and ``per_type`` impostor pairs as ``(gallery, probes, kinds)`` network inputs.

    Raises:
        ValueError: fewer pairs of a type than asked for.
    """
    genuine = [p for p in pairs if p.genuine][:per_type]
    impostor = [p for p in pairs if not p.genuine][:per_type]
    if min(len(genuine), len(impostor)) < per_type:
        raise ValueError(f"asked for {per_type} pairs per type, found {len(genuine)} genuine and {len(impostor)} impostor; lower n_pairs.")
    chosen = genuine + impostor
    gallery = torch.stack([spec.preprocess(p.gallery) for p in chosen]).to(device)
    probes = torch.stack([spec.preprocess(p.probe) for p in chosen]).to(device)
    return gallery, probes, np.array(["genuine"] * per_type + ["impostor"] * per_type)


def rank_by_steps(
    model: nn.Module, probes: torch.Tensor, gallery: torch.Tensor, kinds: Sequence[str], steps: Sequence[int]
) -> tuple[pd.DataFrame, dict[int, dict[str, torch.Tensor]]]:
    """Spearman(e₊, e₋) per pair after each step count: rows (``steps``, ``pair``, ``spearman(e+, e-)``) and the
    perturbed probes ``{steps: {"similar": x̄₊, "dissimilar": x̄₋}}``."""
    perturbed = pair_perturbations(model, probes, gallery, steps)
    rows = []
    for count in steps:
        config = FameConfig(iterations=count)
        e_plus, e_minus = (attribution(probes, perturbed[count][mode], config) for mode in ("similar", "dissimilar"))
        rows += [{"steps": count, "pair": kind, "spearman(e+, e-)": rho} for kind, rho in zip(kinds, spearman_per_pair(e_plus, e_minus))]
    return pd.DataFrame(rows), perturbed


def deletion_candidates(probes: torch.Tensor, perturbed: Mapping[str, torch.Tensor], config: FameConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """The maps the functional test deletes by: e₊, e₋, the signed map and a seeded uniform random map."""
    e_plus, e_minus = (attribution(probes, perturbed[mode], config) for mode in ("similar", "dissimilar"))
    random = torch.rand(e_plus.shape, generator=torch.Generator().manual_seed(seed)).to(e_plus.device)
    return {"e+ (FAME)": e_plus, "e- (FAME)": e_minus, "signed e+ − e-": signed_map(probes, perturbed, config), "random": random}


def deletion_effects(model: nn.Module, gallery: torch.Tensor, probes: torch.Tensor, candidates: Mapping[str, torch.Tensor], kinds: Sequence[str]) -> pd.DataFrame:
    """:func:`region_deletion_effect` (top 10 %) of every candidate map, one row per pair, with its ``pair`` type."""
    effects = pd.DataFrame({name: region_deletion_effect(model, gallery, probes, maps) for name, maps in candidates.items()})
    effects["pair"] = list(kinds)
    return effects


def plot_rank_by_steps(rank_rows: pd.DataFrame) -> Figure:
    """Mean Spearman(e₊, e₋) per pair type against the number of steps (log axis)."""
    fig, ax = plt.subplots(figsize=(4.5, 3), layout="constrained")
    for kind, group in rank_rows.groupby("pair"):
        mean = group.groupby("steps")["spearman(e+, e-)"].mean()
        ax.plot(mean.index, mean.values, marker="o", label=kind)
    ax.set(xscale="log", xlabel="steps T", ylabel="Spearman(e₊, e₋)", ylim=(-1.05, 1.05))
    ax.legend()
    return fig


def claims_table(
    lots_minus_random: Mapping[str, float],
    rank_rows: pd.DataFrame,
    effects: Mapping[str, float],
    randomisation: Mapping[str, Mapping[str, Mapping[str, float | bool]]],
) -> pd.DataFrame:
    """The closing table: each claim, what this run measured, and whether it holds (computed from the numbers).

    Args:
        lots_minus_random: mean LOTS − random-direction difference per :data:`ABLATION_METRICS`.
        rank_rows: :func:`rank_by_steps` rows.
        effects: mean similarity change per deletion candidate (:func:`deletion_candidates` keys).
        randomisation: ``{network: randomisation_verdicts(...)}``.
    """
    by_steps = rank_rows.groupby("steps")["spearman(e+, e-)"]
    first, last = min(by_steps.groups), max(by_steps.groups)
    delete, insert = lots_minus_random[DELETION], lots_minus_random[INSERTION]
    rows = [
        {"paper claim": "FAME's maps come from the network's gradient direction",
         "measured here": f"LOTS − random: IoU {lots_minus_random[IOU]:+.1f} (area above τ {lots_minus_random[AREA]:+.1f} points), deletion {delete:+.2f}, insertion {insert:+.2f}",
         "holds here": bool(delete > 0 and insert < 0)},
        {"paper claim": "e₊ and e₋ are different maps (support vs opposition)",
         "measured here": f"Spearman(e₊, e₋) after {first} step(s) ≥ {by_steps.min()[first]:.3f}; after {last}: {by_steps.mean()[last]:.3f}",
         "holds here": bool(by_steps.mean()[last] < 0.5)},
        {"paper claim": "deleting e₊ lowers the similarity, deleting e₋ does not",
         "measured here": f"Δs: e₊ {effects['e+ (FAME)']:+.3f}, e₋ {effects['e- (FAME)']:+.3f}, signed {effects['signed e+ − e-']:+.3f}, random {effects['random']:+.3f}",
         "holds here": bool(effects["e+ (FAME)"] < effects["random"] and effects["e- (FAME)"] > effects["e+ (FAME)"] + 0.5 * abs(effects["e+ (FAME)"]))},
    ]
    for network, verdicts in randomisation.items():
        measured = ", ".join(f"{method} {v['spearman']:.2f}" for method, v in verdicts.items())
        rows.append({"paper claim": f"FAME's maps depend on the trained weights ({network}, model randomisation)",
                     "measured here": f"Spearman with trained maps, all groups random: {measured} (pass < {PASS_BELOW})",
                     "holds here": bool(verdicts["FAME"]["passes"])})
    return pd.DataFrame(rows)
