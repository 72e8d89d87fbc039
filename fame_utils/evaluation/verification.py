"""Table 2 machinery, reusable outside notebooks: pair sets, every verification method's probe deletion/insertion
curves and AUC tables with intervals, and user protocols (paper Sec. 4.3).

Notebook 05 runs it on the shipped aligned pairs (:func:`shipped_pair_set`, :func:`probe_curves`, :func:`auc_table`)
and, when the user provides them, on AR Face / SCface / CFP with the AdaFace IResNets (:func:`user_protocol_table`).
No plotting here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fame_utils.baselines.reference import centre_gaussian_maps, random_maps
from fame_utils.baselines.registry import VERIFICATION_METHODS, explain_pairs
from fame_utils.data import face_pairs
from fame_utils.data.protocols import FACE_PROTOCOLS, ProtocolPair, load_face_protocol
from fame_utils.fame import FameConfig
from fame_utils.metrics.stats import paired_comparison
from fame_utils.metrics.verification import (
    VerificationCurves,
    bootstrap_auc_interval,
    cosine_scores,
    deletion_insertion,
    eer_threshold,
    verification_accuracy,
)
from fame_utils.models import ModelSpec, load_model

__all__ = [
    "REFERENCE_MAPS",
    "FacePairSet",
    "pair_set",
    "shipped_pair_set",
    "clean_table",
    "score_frame",
    "select_pairs",
    "probe_curves",
    "curves_at_thresholds",
    "auc_table",
    "auc_record",
    "paired_auc_table",
    "centre_share",
    "protocol_aucs",
    "user_protocol_table",
]

#: Reference maps every deletion/insertion table carries next to the methods.
REFERENCE_MAPS = ("centre Gaussian (reference)", "random (reference)")


@dataclass(frozen=True)
class FacePairSet:
    """Pairs in one network's input space with their clean verification.

    Attributes:
        network: network name.
        spec: the face network.
        gallery, probes: ``(N, C, H, W)`` network inputs on the network's device.
        labels: ``(N,)`` 1 genuine / 0 impostor.
        scores: clean cosine scores ``(N,)``.
        threshold: the EER threshold θ (midpoint rule, robust to float noise); ``threshold_4dp`` the original scripts' θ
            (the EER score rounded to 4 decimals).
        eer: the equal error rate at θ.
    """

    network: str
    spec: ModelSpec
    gallery: torch.Tensor
    probes: torch.Tensor
    labels: np.ndarray
    scores: np.ndarray
    threshold: float
    threshold_4dp: float
    eer: float

    @property
    def clean_accuracy(self) -> float:
        """Verification accuracy of the clean pairs at θ."""
        return verification_accuracy(self.scores, self.labels, self.threshold)


def pair_set(network: str, spec: ModelSpec, gallery: torch.Tensor, probes: torch.Tensor, labels: Sequence[int]) -> FacePairSet:
    """Score preprocessed pairs and find their EER threshold.

    Raises:
        ValueError: gallery, probes and labels differ in length, or the labels lack genuine or impostor pairs.
    """
    labels = np.asarray(labels, dtype=int)
    if not (len(gallery) == len(probes) == len(labels)):
        raise ValueError(f"{network}: {len(gallery)} gallery images, {len(probes)} probes and {len(labels)} labels; they must match.")
    scores = cosine_scores(spec.module, gallery, probes).cpu().numpy()
    threshold, eer = eer_threshold(scores, labels, rule="midpoint")
    threshold_4dp, _ = eer_threshold(scores, labels, paper_faithful=True)
    return FacePairSet(network, spec, gallery, probes, labels, scores, float(threshold), float(threshold_4dp), float(eer))


def shipped_pair_set(network: str, device: str | torch.device = "auto") -> FacePairSet:
    """The shipped pairs, aligned at the network's input size, through ``network`` (a shipped face network)."""
    spec = load_model(network, device=device)
    pairs = face_pairs(size=spec.input_size)
    gallery = torch.stack([spec.preprocess(pair.gallery) for pair in pairs]).to(spec.device)
    probes = torch.stack([spec.preprocess(pair.probe) for pair in pairs]).to(spec.device)
    return pair_set(network, spec, gallery, probes, [pair.genuine for pair in pairs])


def clean_table(sets: dict[str, FacePairSet]) -> pd.DataFrame:
    """Per network: pairs, genuine pairs, θ, the 4-decimal θ, EER, clean accuracy at each θ, lowest genuine and highest impostor score."""
    return pd.DataFrame([dict(network=name, pairs=len(s.labels), genuine=int(s.labels.sum()), threshold=s.threshold, threshold_4dp=s.threshold_4dp,
                              eer=s.eer, clean_accuracy=s.clean_accuracy,
                              clean_accuracy_4dp=verification_accuracy(s.scores, s.labels, s.threshold_4dp), min_genuine=float(s.scores[s.labels == 1].min()),
                              max_impostor=float(s.scores[s.labels == 0].max())) for name, s in sets.items()]).set_index("network")


def score_frame(sets: dict[str, FacePairSet]) -> pd.DataFrame:
    """Long table of clean scores (network, score, pair = genuine / impostor) for the score histograms."""
    return pd.concat([pd.DataFrame({"network": name, "score": s.scores, "pair": np.where(s.labels == 1, "genuine", "impostor")})
                      for name, s in sets.items()], ignore_index=True)


def select_pairs(labels: Sequence[int], per_type: int | None) -> np.ndarray:
    """Indices of the first ``per_type`` genuine and first ``per_type`` impostor pairs, sorted (``None``: every pair)."""
    labels = np.asarray(labels)
    if per_type is None:
        return np.arange(len(labels))
    return np.sort(np.concatenate([np.flatnonzero(labels == 1)[:per_type], np.flatnonzero(labels == 0)[:per_type]]))


def probe_curves(pairs: FacePairSet, indices: np.ndarray, similar_maps: dict[str, torch.Tensor], seed: int = 0,
                 threshold: float | None = None) -> dict[str, VerificationCurves]:
    """Probe deletion/insertion sweep of the pairs at ``indices`` for each method's e₊ map, then the two reference maps.

    ``threshold`` is θ (default: ``pairs.threshold``). For the paper-faithful Table 2 at ``pairs.threshold_4dp``,
    re-decide these sweeps with :func:`curves_at_thresholds` instead of repeating every forward pass.
    """
    theta = pairs.threshold if threshold is None else float(threshold)
    gallery, probes, labels = pairs.gallery[indices], pairs.probes[indices], pairs.labels[indices]
    ranked = dict(similar_maps)
    ranked[REFERENCE_MAPS[0]] = centre_gaussian_maps(probes)
    ranked[REFERENCE_MAPS[1]] = random_maps(probes, seed=seed)
    return {method: deletion_insertion(pairs.spec.module, gallery, probes, maps, labels, theta) for method, maps in ranked.items()}


def curves_at_thresholds(curves: Mapping[str, Mapping[str, VerificationCurves]], thresholds: Mapping[str, float]) -> dict[str, dict[str, VerificationCurves]]:
    """The same sweeps (network → method → curves) decided at another θ per network (no forward pass).

    Raises:
        KeyError: a network of ``curves`` has no threshold in ``thresholds``.
    """
    missing = [network for network in curves if network not in thresholds]
    if missing:
        raise KeyError(f"no threshold for {missing}; thresholds given for {list(thresholds)}.")
    return {network: {method: curve.with_threshold(thresholds[network]) for method, curve in by_method.items()} for network, by_method in curves.items()}


def auc_table(curves: dict[str, dict[str, VerificationCurves]], n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Table 2: deletion and insertion AUC (%) with 95 % bootstrap intervals over pairs, indexed by (network, method)."""
    rows = []
    for network, by_method in curves.items():
        for method, curve in by_method.items():
            deletion = bootstrap_auc_interval(curve, "deletion", n_boot=n_boot, seed=seed)
            insertion = bootstrap_auc_interval(curve, "insertion", n_boot=n_boot, seed=seed)
            rows.append(dict(network=network, method=method, deletion=curve.deletion_auc, deletion_ci=f"[{deletion[0]:.1f}, {deletion[1]:.1f}]",
                             insertion=curve.insertion_auc, insertion_ci=f"[{insertion[0]:.1f}, {insertion[1]:.1f}]"))
    return pd.DataFrame(rows).set_index(["network", "method"])


def auc_record(table: pd.DataFrame, methods: Sequence[str] = VERIFICATION_METHODS) -> tuple[dict, pd.DataFrame]:
    """The numbers notebook 05 records from :func:`auc_table`, and the per-method means over networks (methods, then references).

    Returns:
        ``(record, means)``: ``record`` holds the mean AUCs of the methods and of the references, every
        (network, method) pair, whether each method's deletion AUC is below its insertion AUC, and the best method
        on each sweep.
    """
    means = table.groupby("method", sort=False)[["deletion", "insertion"]].mean()
    summary, references = means.loc[list(methods)], means.drop(index=list(methods))
    record = dict(
        deletion_auc=summary["deletion"].to_dict(), insertion_auc=summary["insertion"].to_dict(),
        reference_auc={m: dict(deletion=r.deletion, insertion=r.insertion) for m, r in references.iterrows()},
        per_network={f"{n}/{m}": dict(deletion=r.deletion, insertion=r.insertion) for (n, m), r in table.iterrows()},
        deletion_below_insertion={m: bool(r.deletion < r.insertion) for m, r in summary.iterrows()},
        best_deletion=summary["deletion"].idxmin(), best_insertion=summary["insertion"].idxmax(),
    )
    return record, pd.concat([summary, references])


def paired_auc_table(curves: dict[str, dict[str, VerificationCurves]], reference: str = "FAME") -> pd.DataFrame:
    """Paired tests of ``reference`` against every other method on the same pairs, per network and sweep.

    Each pair's AUC is that of its own 0/1 correctness curve (:meth:`VerificationCurves.pair_aucs`; their mean is
    the Table 2 AUC). One row per (network, baseline, metric ∈ deletion/insertion AUC): ``n`` pairs,
    ``median_difference`` (reference − baseline), matched-pairs ``rank_biserial`` and the two-sided Wilcoxon
    signed-rank ``p_value`` (:func:`~fame_utils.metrics.stats.paired_comparison`).

    Raises:
        ValueError: ``reference`` is missing on a network, or a method's curves cover other pairs (labels differ).
    """
    rows = []
    for network, by_method in curves.items():
        if reference not in by_method:
            raise ValueError(f"paired_auc_table: reference {reference!r} has no curves on {network}; methods there: {list(by_method)}.")
        base = by_method[reference]
        for baseline, curve in by_method.items():
            if baseline == reference:
                continue
            if not np.array_equal(curve.labels, base.labels):
                raise ValueError(f"paired_auc_table: {network}: {baseline!r} was swept on {len(curve.labels)} pairs with other labels than "
                                 f"{reference!r} ({len(base.labels)} pairs); sweep both on the same pairs.")
            for kind in ("deletion", "insertion"):
                result = paired_comparison(base.pair_aucs(kind), curve.pair_aucs(kind))
                rows.append(dict(network=network, reference=reference, baseline=baseline, metric=f"{kind} AUC", **result._asdict()))
    return pd.DataFrame(rows)


def centre_share(similar_maps: torch.Tensor) -> float:
    """Mean of maps ``(N, H, W)`` over the central half of the crop divided by the mean over the whole crop (uniform map: 1)."""
    h, w = similar_maps.shape[-2:]
    return float(similar_maps[:, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].mean() / similar_maps.mean().clamp_min(1e-12))


def protocol_aucs(
    spec: ModelSpec,
    pairs: Sequence[ProtocolPair],
    fame_config: FameConfig,
    n_masks: int = 500,
    seed: int = 0,
    methods: tuple[str, ...] = VERIFICATION_METHODS,
) -> dict[str, tuple[float, float]]:
    """``{method: (deletion AUC, insertion AUC)}`` (× 100) for one protocol, θ = the clean EER threshold.

    Only the probe is perturbed, ranked by its own similar map (docs/decisions.md#deletion-insertion-probe).

    Raises:
        ValueError: an empty protocol, or one without both genuine and impostor pairs.
    """
    if not pairs:
        raise ValueError("the protocol has no pairs.")
    crops = [pair.load() for pair in pairs]
    gallery = torch.stack([spec.preprocess(g) for g, _ in crops]).to(spec.device)
    probes = torch.stack([spec.preprocess(p) for _, p in crops]).to(spec.device)
    scored = pair_set(spec.name, spec, gallery, probes, [pair.genuine for pair in pairs])
    explained = explain_pairs(spec.module, spec.target_layer, gallery, probes, scored.threshold, methods=methods, sides=("probe",),
                              fame_config=fame_config, n_masks=n_masks, seed=seed)
    aucs = {}
    for method in methods:
        curve = deletion_insertion(spec.module, gallery, probes, explained[method]["probe"]["similar"], scored.labels, scored.threshold)
        aucs[method] = (float(curve.deletion_auc), float(curve.insertion_auc))
    return aucs


def user_protocol_table(
    specs: dict[str, ModelSpec],
    protocols_dir: str | Path,
    images_dir: str | Path,
    fame_config: FameConfig,
    n_masks: int = 500,
    seed: int = 0,
    protocols: dict[str, Sequence[str]] = FACE_PROTOCOLS,
) -> tuple[pd.DataFrame, list[str]]:
    """Deletion/insertion AUCs for every network × available protocol, and the skipped protocols.

    Returns:
        A long table (dataset, protocol, network, method, deletion, insertion) and one message per
        protocol that was skipped because its CSV or images are missing.
    """
    rows, skipped = [], []
    for dataset, names in protocols.items():
        for protocol in names:
            try:
                pairs = load_face_protocol(dataset, protocol, protocols_dir, images_dir)
            except FileNotFoundError as error:
                skipped.append(f"{dataset}/{protocol} skipped: {error}")
                continue
            for network, spec in specs.items():
                for method, (deletion, insertion) in protocol_aucs(spec, pairs, fame_config, n_masks, seed).items():
                    rows.append(dict(dataset=dataset, protocol=protocol, network=network, method=method, deletion=deletion, insertion=insertion))
    return pd.DataFrame(rows, columns=["dataset", "protocol", "network", "method", "deletion", "insertion"]), skipped
