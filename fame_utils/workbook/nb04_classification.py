"""Notebook 04 (reading the classification benchmark): Table 1 over networks, the sanity comparisons against the
random and centre-Gaussian maps, the Fig. 2 / Fig. 9 sheets and the Finer-CAM / Finer-FAME panel.

Only notebook 04 needs these; the benchmark itself is :mod:`fame_utils.evaluation.classification`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from fame_utils import viz
from fame_utils.baselines.registry import SANITY_METHODS, classifier_maps, method_label
from fame_utils.evaluation.classification import BenchmarkResult, PreparedSample, expected_random_iou, prepare_samples, run_benchmark, summarize
from fame_utils.fame import FameConfig
from fame_utils.metrics.classification import IOU_THRESHOLDS, Normalizer
from fame_utils.metrics.masks import DEFAULT_PERCENTS
from fame_utils.models import ModelSpec

__all__ = [
    "benchmark_networks",
    "combined_summary",
    "method_means",
    "sanity_record",
    "random_iou_floor",
    "sanity_lines",
    "findings",
    "class_similarity_line",
    "network_photo_sheet",
    "class_maps",
    "method_seconds",
]

def benchmark_networks(
    specs: dict[str, ModelSpec],
    photos: Sequence,
    methods: Sequence[str],
    config: FameConfig,
    generator: torch.Generator | None = None,
    percents: Sequence[float] = DEFAULT_PERCENTS,
) -> dict[str, BenchmarkResult]:
    """:func:`~fame_utils.evaluation.classification.run_benchmark` for every network on the same photos."""
    return {name: run_benchmark(spec, prepare_samples(spec, photos), methods, config, generator=generator, percents=percents)
            for name, spec in specs.items()}


def combined_summary(results: dict[str, BenchmarkResult], seed: int = 0) -> pd.DataFrame:
    """Long Table 1 (mean, bootstrap interval, n per network × method × metric) over all networks' records."""
    return summarize(pd.concat([result.records for result in results.values()], ignore_index=True), seed=seed)


def method_means(summary: pd.DataFrame) -> pd.DataFrame:
    """Means indexed by ``(network, method)``, one column per metric."""
    return summary.pivot_table(index=["network", "method"], columns="metric", values="mean", sort=False)


def _methods_where(means: pd.DataFrame, network: str, methods: Sequence[str], metric: str, reference: str, higher_is_better: bool) -> list[str]:
    ref = means.loc[(network, reference), metric]
    return [m for m in methods if (means.loc[(network, m), metric] > ref if higher_is_better else means.loc[(network, m), metric] < ref)]


def _real_methods(methods: Sequence[str]) -> list[str]:
    """The labels of the methods (keys) that are not sanity floors."""
    return [method_label(m) for m in methods if m not in SANITY_METHODS]


def sanity_record(summary: pd.DataFrame, methods: Sequence[str]) -> dict:
    """Numbers notebook 04 records: every mean, and per network how many real methods (keys ``methods``, recorded by
    label) beat the random map on deletion AUC (higher), insertion AUC (lower) and IoU at τ = 0.5."""
    means = method_means(summary)
    networks = list(dict.fromkeys(summary["network"]))
    real = _real_methods(methods)

    def count(metric: str, higher_is_better: bool) -> dict[str, int]:
        return {net: len(_methods_where(means, net, real, metric, "Random", higher_is_better)) for net in networks}

    return dict(methods=[method_label(m) for m in methods], networks=networks, real_method_count=len(real),
                means={f"{net}|{m}|{metric}": float(means.loc[(net, m), metric]) for net, m in means.index for metric in means.columns},
                methods_beating_random_deletion=count("deletion_auc", True), methods_beating_random_insertion=count("insertion_auc", False),
                methods_beating_random_iou05=count("iou@0.5 (default)", True))


def random_iou_floor(results: dict[str, BenchmarkResult], thresholds: Sequence[float] = IOU_THRESHOLDS) -> dict[str, float]:
    """Expected IoU ×100 of the random map per ``"network|τ"`` from each network's mapped boxes (default convention),
    to set beside the recorded ``Random`` row (:func:`~fame_utils.evaluation.classification.expected_random_iou`)."""
    return {f"{name}|{tau:g}": expected_random_iou(result.samples, tau) for name, result in results.items() for tau in thresholds}


def sanity_lines(summary: pd.DataFrame, methods: Sequence[str]) -> list[str]:
    """Per network, in words: which methods beat the random map on insertion and on deletion AUC, and which are
    worse than the centre Gaussian on insertion."""
    means = method_means(summary)
    real = _real_methods(methods)
    lines = []
    for net in dict.fromkeys(summary["network"]):
        for verdict, metric, reference, higher in (("beat the random map on insertion AUC", "insertion_auc", "Random", False),
                                                   ("beat the random map on deletion AUC", "deletion_auc", "Random", True),
                                                   ("worse than the centre Gaussian on insertion AUC", "insertion_auc", "Centre Gaussian", True)):
            lines.append(f"{net}: {verdict}: {', '.join(_methods_where(means, net, real, metric, reference, higher)) or 'none'}")
    return lines


def network_photo_sheet(
    results: dict[str, BenchmarkResult],
    specs: dict[str, ModelSpec],
    photos: Sequence[str],
    methods: Sequence[str],
    photo_first: bool = False,
    with_input: bool = False,
    panel_size: float = 1.6,
):
    """Fig. 2 / Fig. 9 layout: one row per (network, photo) — or (photo, network) with ``photo_first`` — and one
    column per method key (titled by its label; plus the input image with ``with_input``), maps over the network's own crop.

    Raises:
        ValueError: a photo is not among a network's benchmark samples.
    """
    cells, backgrounds = {}, {}
    order = [(net, photo) for photo in photos for net in results] if photo_first else [(net, photo) for net in results for photo in photos]
    for net, photo in order:
        names = [sample.name for sample in results[net].samples]
        if photo not in names:
            raise ValueError(f"photo {photo!r} was not benchmarked on {net}; benchmarked photos: {names}.")
        i = names.index(photo)
        row = f"{photo}\n{net}" if photo_first else f"{net}\n{photo}"
        backgrounds[row] = specs[net].to_display(results[net].samples[i].tensor)
        cells.update({(row, method_label(method)): results[net].maps[method_label(method)][i] for method in methods})
        if with_input:
            cells[(row, "input")] = backgrounds[row]
    columns = (["input"] if with_input else []) + [method_label(method) for method in methods]
    return viz.comparison_sheet(cells, list(backgrounds), columns, backgrounds=backgrounds, panel_size=panel_size)


def class_maps(spec: ModelSpec, sample: PreparedSample, classes: Sequence[int], methods: Sequence[str], config: FameConfig) -> dict[str, torch.Tensor]:
    """Each method's map ``(len(classes), H, W)`` of the same image for each class (Finer-CAM panel), keyed by label."""
    images = sample.tensor[None].expand(len(classes), -1, -1, -1).contiguous().to(spec.device)
    return {method_label(method): classifier_maps(method, spec.module, spec.target_layer, images, list(classes), config, normalizer=Normalizer.from_spec(spec)).cpu() for method in methods}


def _per_network(means: pd.DataFrame, networks: Sequence[str], method: str, metric: str, digits: int = 1) -> str:
    return " / ".join(f"{means.loc[(net, method), metric]:.{digits}f}" for net in networks)


def _winners_everywhere(means: pd.DataFrame, networks: Sequence[str], methods: Sequence[str], metric: str, reference: float | str,
                        higher_is_better: bool) -> list[str]:
    """Methods better than ``reference`` (a method label, or a number per network via a dict) on every network."""
    def beats(net: str, method: str) -> bool:
        ref = means.loc[(net, reference), metric] if isinstance(reference, str) else reference[net]
        value = means.loc[(net, method), metric]
        return value > ref if higher_is_better else value < ref

    return [m for m in methods if all(beats(net, m) for net in networks)]


def findings(summary: pd.DataFrame, methods: Sequence[str], random_iou: dict[str, float]) -> list[str]:
    """What Table 1 of this run shows, one sentence per question, with the numbers (per network, in table order).

    Args:
        summary: the long table of :func:`combined_summary`.
        methods: the method keys that ran (must include FAME, Random and Centre Gaussian).
        random_iou: :func:`random_iou_floor` of the same run.
    """
    means = method_means(summary)
    networks = list(dict.fromkeys(summary["network"]))
    real = _real_methods(methods)
    nets = " / ".join(networks)
    floor = {net: random_iou[f"{net}|0.5"] for net in networks}
    iou_winners = _winners_everywhere(means, networks, real, "iou@0.5 (default)", floor, True)
    insertion_winners = _winners_everywhere(means, networks, real, "insertion_auc", "Random", False)
    deletion_winners = _winners_everywhere(means, networks, real, "deletion_auc", "Random", True)
    below_centre = _winners_everywhere(means, networks, real, "insertion_auc", "Centre Gaussian", False)
    best_insertion = [min(real, key=lambda m: means.loc[(net, m), "insertion_auc"]) for net in networks]
    faithful = "FAME (paper-faithful)"
    lines = [
        f"Networks: {nets}; every number below is given per network in that order.",
        f"IoU@0.5 against its floor: the random map's expected IoU is {' / '.join(f'{floor[n]:.1f}' for n in networks)}; "
        f"methods above it on every network: {', '.join(iou_winners) or 'none'}. "
        + "; ".join(f"{m}: {_per_network(means, networks, m, 'iou@0.5 (default)')}" for m in ("FAME", "FullGrad") if m in real) + ".",
        f"Insertion (black), lower is better: methods better than the random map on every network: {', '.join(insertion_winners) or 'none'}; "
        f"better than the centre Gaussian ({_per_network(means, networks, 'Centre Gaussian', 'insertion_auc', 2)}) on every network: "
        f"{', '.join(below_centre) or 'none'}; FAME {_per_network(means, networks, 'FAME', 'insertion_auc', 2)}; "
        f"best method per network: {' / '.join(best_insertion)}.",
        f"Deletion (black), higher is better: methods above the random map ({_per_network(means, networks, 'Random', 'deletion_auc', 2)}) "
        f"on every network: {', '.join(deletion_winners) or 'none'}; FAME {_per_network(means, networks, 'FAME', 'deletion_auc', 2)}.",
    ]
    if faithful in real:
        lines.append(
            f"Default vs paper-faithful FAME: IoU@0.3 {_per_network(means, networks, 'FAME', 'iou@0.3 (default)')} vs "
            f"{_per_network(means, networks, faithful, 'iou@0.3 (default)')}; insertion {_per_network(means, networks, 'FAME', 'insertion_auc', 2)} vs "
            f"{_per_network(means, networks, faithful, 'insertion_auc', 2)}.")
    return lines


def class_similarity_line(similarity: dict[str, float]) -> str:
    """The Finer-CAM panel's numbers: each method's mean pairwise correlation of its class maps (lower = more class-specific)."""
    ranked = sorted(similarity.items(), key=lambda item: item[1])
    return "Mean correlation between the class maps, most class-specific first: " + ", ".join(f"{m} {r:.2f}" for m, r in ranked) + "."



def method_seconds(results: dict[str, BenchmarkResult]) -> pd.DataFrame:
    """Where notebook 04's time went: one row per (network, method) with the wall seconds of its maps and of its curves
    (IoU and the deletion/insertion sweeps), slowest maps first."""
    rows = [{"network": network, "method": method, "maps (s)": round(spent["maps"], 1), "curves (s)": round(spent["curves"], 1)}
            for network, result in results.items() for method, spent in result.seconds.items()]
    return pd.DataFrame(rows, columns=["network", "method", "maps (s)", "curves (s)"]).sort_values("maps (s)", ascending=False, ignore_index=True)
