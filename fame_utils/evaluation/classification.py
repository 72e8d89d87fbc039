"""Table 1 machinery, reusable outside notebooks: every method × one classifier over annotated photos → IoU, ROAD
curves, intervals (paper Sec. 4.2).

Pipeline for one network:

1. :func:`prepare_samples`: each photo through the network's own preprocessing, the [0, 1] crop for
   ROAD, and its box in input pixels under both conventions (aspect-preserving; the paper's per-axis).
2. :func:`run_benchmark`: maps of every method (:func:`fame_utils.baselines.classifier_maps`), IoU at
   each τ for both box conventions, ROAD deletion/insertion curves (raw logits kept).
3. :func:`summarize` / :func:`format_table`: mean and seeded 95 % bootstrap interval per method.

The box of a photo is the **first box of its target class** (the paper's first-box rule); a photo
whose box leaves the crop entirely gets no IoU (NaN, excluded and counted). No plotting here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from fame_utils import cache
from fame_utils.baselines.registry import classifier_maps, method_label
from fame_utils.fame import FameConfig
from fame_utils.metrics.classification import IOU_THRESHOLDS, Normalizer, RoadCurves, box_in_input, iou, road_curves
from fame_utils.metrics.masks import DEFAULT_PERCENTS
from fame_utils.metrics.stats import bootstrap_ci, paired_comparison

__all__ = [
    "BOX_CONVENTIONS",
    "BenchmarkResult",
    "ClassificationSample",
    "PreparedSample",
    "expected_random_iou",
    "format_table",
    "paired_table",
    "prepare_samples",
    "run_benchmark",
    "samples_from_imagenet",
    "samples_from_objects",
    "summarize",
]

#: Box conventions: aspect-preserving resize (default) and the original per-axis scaling (paper-faithful).
BOX_CONVENTIONS: dict[str, bool] = {"default": False, "paper-faithful": True}


@dataclass(frozen=True)
class ClassificationSample:
    """One photo to explain: the class to explain and its box in original pixels (``None`` = no box)."""

    name: str
    image: Image.Image = field(repr=False)
    target: int
    box: tuple[int, int, int, int] | None


def samples_from_objects(objects: Sequence[Any]) -> list[ClassificationSample]:
    """Turn :class:`fame_utils.data.ObjectImage` photos into samples: target = ``classes[0]``, box = its first box."""
    samples = []
    for item in objects:
        target = int(item.classes[0])
        box = next(tuple(int(v) for v in b) for c, b in zip(item.classes, item.boxes) if int(c) == target)
        samples.append(ClassificationSample(item.name, item.image, target, box))
    return samples


def samples_from_imagenet(rows: Sequence[Any]) -> list[ClassificationSample]:
    """Turn :class:`fame_utils.data.ImageNetSample` protocol rows into samples (loads each image; first box)."""
    return [ClassificationSample(row.image_id, row.load(), int(row.target), tuple(int(v) for v in row.box)) for row in rows]


@dataclass(frozen=True)
class PreparedSample:
    """A sample in one network's input space.

    Attributes:
        name, target: as in :class:`ClassificationSample`.
        tensor: ``(3, H, W)`` network input (normalised).
        pixels: ``(3, H, W)`` the same crop in [0, 1] RGB (ROAD removes pixels here).
        boxes: box in input pixels per convention (``None`` if the photo has no box or it left the crop).
    """

    name: str
    target: int
    tensor: torch.Tensor = field(repr=False)
    pixels: torch.Tensor = field(repr=False)
    boxes: dict[str, tuple[int, int, int, int] | None]


def _mapped_box(sample: ClassificationSample, spec: Any, paper_faithful: bool) -> tuple[int, int, int, int] | None:
    if sample.box is None:
        return None
    box = box_in_input(sample.box, sample.image.size, spec, paper_faithful=paper_faithful)
    return box if box[2] > box[0] and box[3] > box[1] else None


def prepare_samples(spec: Any, samples: Sequence[ClassificationSample]) -> list[PreparedSample]:
    """Preprocess every sample for ``spec`` (a classifier :class:`~fame_utils.models.ModelSpec`)."""
    normalizer = Normalizer.from_spec(spec)
    prepared = []
    for sample in samples:
        tensor = spec.preprocess(sample.image)
        boxes = {name: _mapped_box(sample, spec, faithful) for name, faithful in BOX_CONVENTIONS.items()}
        prepared.append(PreparedSample(sample.name, sample.target, tensor, normalizer.inverse(tensor).clamp(0, 1), boxes))
    return prepared


def expected_random_iou(samples: Sequence[PreparedSample], tau: float, convention: str = "default") -> float:
    """Expected IoU ×100 of an independent-uniform-noise map (the ``"Random"`` row) at threshold τ, over the samples.

    The map keeps a share q = 1 − τ of the pixels anywhere, so on a box covering a share b of the crop
    E[IoU] = q·b / (q + b − q·b); the mean runs over samples whose box (``convention``) lies in the crop.

    Raises:
        ValueError: τ outside (0, 1), or no sample has a box.
    """
    if not 0 < tau < 1:
        raise ValueError(f"tau must lie in (0, 1), got {tau}.")
    kept = 1.0 - tau
    values = []
    for sample in samples:
        box = sample.boxes.get(convention)
        if box is not None:
            height, width = sample.tensor.shape[-2:]
            share = (box[2] - box[0]) * (box[3] - box[1]) / (height * width)
            values.append(kept * share / (kept + share - kept * share))
    if not values:
        raise ValueError(f"no sample has a {convention!r} box inside its crop: the random-map IoU floor is undefined.")
    return 100.0 * float(np.mean(values))


@dataclass
class BenchmarkResult:
    """Everything one network's run produced.

    Attributes:
        network: the network's name.
        records: one row per (sample, method label): ``iou@τ`` per convention (0–100), ``deletion_auc`` and
            ``insertion_auc`` (black pixels; logit units, normalised AUC of the logit drop over P), plus
            ``road_morf_auc``/``road_lerf_auc`` when ROAD imputation was asked for.
        curves: method label → :class:`RoadCurves` over all samples (in sample order).
        maps: method label → ``(N, H, W)`` maps.
        samples: the prepared samples.
        seconds: method label → wall seconds of its ``"maps"`` (near 0 when served from the map cache) and of its
            ``"curves"`` (IoU and the deletion/insertion sweeps).
    """

    network: str
    records: pd.DataFrame
    curves: dict[str, RoadCurves]
    maps: dict[str, torch.Tensor]
    samples: list[PreparedSample]
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)


def _iou_columns(saliency: torch.Tensor, boxes: dict[str, Any], thresholds: Sequence[float]) -> dict[str, float]:
    row = {}
    for convention, box in boxes.items():
        for tau in thresholds:
            row[f"iou@{tau:g} ({convention})"] = float("nan") if box is None else 100.0 * iou(saliency, box, tau)
    return row


def _method_curves(spec: Any, samples: Sequence[PreparedSample], maps: torch.Tensor, normalizer: Normalizer, percents: Sequence[float],
                   imputation: bool, generator: torch.Generator | None) -> RoadCurves:
    """One method's curves over all samples, in one sweep (forward batches span samples)."""
    device = getattr(spec, "device", torch.device("cpu"))
    pixels = torch.stack([s.pixels for s in samples]).to(device)
    return road_curves(spec.module, pixels, maps.to(device), [s.target for s in samples], normalizer, percents, imputation=imputation, generator=generator)


#: Methods whose maps draw from the run's generator: never cached, so a cached run makes the same draws as an uncached one.
_GENERATOR_METHODS = frozenset({"Random"})
#: The modules that compute classifier maps (their source is part of every cache key).
_MAP_CODE = ("fame_utils.fame", "fame_utils.baselines", "fame_utils.layers", "fame_utils.models", "fame_utils.metrics.classification")


def _map_computer(spec: Any, config: FameConfig, generator: torch.Generator | None, normalizer: Normalizer,
                  use_cache: bool) -> Callable[[str, torch.Tensor, list[int]], torch.Tensor]:
    """``maps(method, images, classes)`` for one network: cached per batch as computed unless the method draws from ``generator``."""
    caching = use_cache and cache.enabled()
    weights = cache.weights_digest(spec.module) if caching else ""
    settings = dict(layer=str(spec.target_layer), fame=config, normalizer=normalizer, device=str(getattr(spec, "device", "cpu")))

    def maps(method: str, images: torch.Tensor, classes: list[int]) -> torch.Tensor:
        def compute() -> torch.Tensor:
            return classifier_maps(method, spec.module, spec.target_layer, images, classes, config, generator, normalizer).cpu()

        if not caching or method in _GENERATOR_METHODS:
            return compute()
        return cache.cached(cache.map_key(spec.name, weights, [images], method, {**settings, "classes": classes}, _MAP_CODE), compute)

    return maps


def run_benchmark(
    spec: Any,
    samples: Sequence[PreparedSample],
    methods: Sequence[str],
    config: FameConfig,
    generator: torch.Generator | None = None,
    thresholds: Sequence[float] = IOU_THRESHOLDS,
    percents: Sequence[float] = DEFAULT_PERCENTS,
    imputation: bool = False,
    batch_size: int = 4,
    progress: bool = True,
    use_cache: bool = True,
) -> BenchmarkResult:
    """Maps, IoU and ROAD curves of every method on every sample for one network.

    Args:
        spec: classifier :class:`~fame_utils.models.ModelSpec` (``module``, ``target_layer``, ``name``, mean/std).
        samples: from :func:`prepare_samples` for this spec.
        methods: keys from :data:`fame_utils.baselines.CLASSIFIER_METHODS` (results are keyed by their labels,
            :func:`fame_utils.baselines.method_label`).
        config: FAME hyperparameters for the FAME variants.
        generator: random source for the ``"Random"`` map.
        thresholds: IoU thresholds τ.
        percents: ROAD percents P.
        imputation: also compute ROAD (noisy linear imputation; ``road_morf_auc``, ``road_lerf_auc``) next to the
            black-pixel deletion/insertion columns (opt-in: one sparse solve per image and percent).
        batch_size: photos per explanation batch.
        progress: show a ``tqdm.auto`` bar over methods.
        use_cache: serve each batch's maps from :mod:`fame_utils.cache` when computed before (not the ``"Random"``
            map, which draws from ``generator``); the tables equal an uncached run's.

    Raises:
        ValueError: no samples.
    """
    if not samples:
        raise ValueError("run_benchmark needs at least one sample.")
    from tqdm.auto import tqdm

    device = getattr(spec, "device", torch.device("cpu"))
    normalizer = Normalizer.from_spec(spec)
    tensors = torch.stack([s.tensor for s in samples]).to(device)
    classes = [s.target for s in samples]
    compute_maps = _map_computer(spec, config, generator, normalizer, use_cache)
    maps, curves, rows, seconds = {}, {}, [], {}
    for method in tqdm(list(methods), desc=f"{spec.name}: methods", disable=not progress, leave=False):
        started = time.perf_counter()
        chunks = [compute_maps(method, tensors[i:i + batch_size], classes[i:i + batch_size]) for i in range(0, len(samples), batch_size)]
        label = method_label(method)
        maps[label] = torch.cat(chunks).cpu()
        mapped = time.perf_counter()
        curves[label] = _method_curves(spec, samples, maps[label], normalizer, percents, False, generator)
        aucs = {"deletion_auc": curves[label].deletion_auc(), "insertion_auc": curves[label].insertion_auc()}
        if imputation:
            road = _method_curves(spec, samples, maps[label], normalizer, percents, True, generator)
            aucs.update(road_morf_auc=road.deletion_auc(), road_lerf_auc=road.insertion_auc())
        for i, sample in enumerate(samples):
            rows.append({"network": spec.name, "sample": sample.name, "method": label, **_iou_columns(maps[label][i], sample.boxes, thresholds),
                         **{name: float(values[i]) for name, values in aucs.items()}})
        seconds[label] = {"maps": mapped - started, "curves": time.perf_counter() - mapped}
    return BenchmarkResult(spec.name, pd.DataFrame(rows), curves, maps, list(samples), seconds)


def summarize(records: pd.DataFrame, seed: int = 0, confidence: float = 0.95) -> pd.DataFrame:
    """Long table: one row per (network, method, metric) with ``mean``, ``low``, ``high`` and ``n`` (NaN rows excluded).

    Intervals are percentile bootstraps over photos (:func:`bootstrap_ci`, seeded).
    """
    metrics = [c for c in records.columns if c not in ("network", "sample", "method")]
    rows = []
    for (network, method), group in records.groupby(["network", "method"], sort=False):
        for metric in metrics:
            values = group[metric].dropna().to_numpy()
            mean, low, high = bootstrap_ci(values, confidence, seed=seed) if values.size else (float("nan"),) * 3
            rows.append({"network": network, "method": method, "metric": metric, "mean": mean, "low": low, "high": high, "n": int(values.size)})
    return pd.DataFrame(rows)


#: Readable names of the AUC columns: each says how the pixels were removed.
AUC_COLUMN_NAMES: dict[str, str] = {
    "deletion_auc": "deletion (black) AUC (logit drop) ↑",
    "insertion_auc": "insertion (black) AUC (logit drop) ↓",
    "road_morf_auc": "ROAD MoRF AUC (logit drop) ↑",
    "road_lerf_auc": "ROAD LeRF AUC (logit drop) ↓",
}


def format_table(summary: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """Wide, readable table: one row per (network, method), cells ``mean [low, high]``."""
    cells = summary.assign(cell=[f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]" if np.isfinite(m) else "n/a" for m, lo, hi in zip(summary["mean"], summary["low"], summary["high"])])
    wide = cells.pivot_table(index=["network", "method"], columns="metric", values="cell", aggfunc="first", sort=False)
    order = list(dict.fromkeys(summary["metric"]))
    wide = wide[order].reset_index()
    wide.columns.name = None
    return wide.rename(columns=AUC_COLUMN_NAMES)


def paired_table(records: pd.DataFrame, reference: str = "FAME") -> pd.DataFrame:
    """Paired tests of ``reference`` against every other method on the same photos, per network and metric.

    One row per (network, baseline, metric) of ``records`` (:attr:`BenchmarkResult.records`): ``n`` photos with
    both values, ``median_difference`` (reference − baseline), matched-pairs ``rank_biserial`` and the two-sided
    Wilcoxon signed-rank ``p_value`` (:func:`~fame_utils.metrics.stats.paired_comparison`); a metric no photo has
    for both methods gives ``n`` = 0 and NaN.

    Raises:
        ValueError: ``reference`` is not a method of a network's records.
    """
    metrics = [c for c in records.columns if c not in ("network", "sample", "method")]
    rows = []
    for network, group in records.groupby("network", sort=False):
        methods = list(dict.fromkeys(group["method"]))
        if reference not in methods:
            raise ValueError(f"paired_table: reference {reference!r} has no records on {network}; methods there: {methods}.")
        for metric in metrics:
            wide = group.pivot(index="sample", columns="method", values=metric)
            for baseline in (m for m in methods if m != reference):
                both = wide[[reference, baseline]].dropna()
                result = paired_comparison(both[reference], both[baseline]) if len(both) else (0, float("nan"), float("nan"), float("nan"))
                rows.append(dict(network=network, reference=reference, baseline=baseline, metric=metric,
                                 **dict(zip(("n", "median_difference", "rank_biserial", "p_value"), result))))
    return pd.DataFrame(rows)
