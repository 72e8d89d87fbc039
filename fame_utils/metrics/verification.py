"""Face-verification metrics: EER threshold, accuracy, AUC and the probe deletion/insertion sweep (paper Sec. 4.3, Tab. 2, Fig. 4).

* Scores are cosine similarities of the embeddings of a gallery and a probe image.
* :func:`eer_threshold` sweeps the unique scores from high to low and picks the first threshold where
  FMR and FNMR are closest (ties → the largest threshold); ``rule="midpoint"`` moves θ halfway to the next
  lower score so float noise cannot flip the pair that sits on it (Table 2 uses it).
* :func:`deletion_insertion` perturbs only the probe, ranked by its similar map e₊, for genuine and
  impostor pairs alike (docs/decisions.md#deletion-insertion-probe), and returns the raw accuracy curves and the AUC × 100.

It knows nothing of attribution methods, benchmarks or plotting.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from fame_utils._checks import check_similarities
from fame_utils.metrics.masks import DEFAULT_PERCENTS, mask_extent, normalized_auc, percentile_masks
from fame_utils.metrics.stats import bootstrap_interval
from fame_utils.models.folding import inference_copy
from fame_utils.runtime import FORWARD_BATCH, fast_layout

__all__ = [
    "VerificationCurves",
    "bootstrap_auc_interval",
    "cosine_scores",
    "deletion_insertion",
    "eer_threshold",
    "embed",
    "verification_accuracy",
]

ArrayLike = Sequence[float] | np.ndarray | torch.Tensor


def _as_array(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite (found NaN or inf).")
    return array


def _as_labels(labels: ArrayLike, size: int) -> np.ndarray:
    array = _as_array(labels, "labels")
    if array.size != size:
        raise ValueError(f"scores and labels must have the same length, got {size} scores and {array.size} labels.")
    if not np.all((array == 0) | (array == 1)):
        raise ValueError("labels must be 1 (genuine, same identity) or 0 (impostor); got other values.")
    return array.astype(bool)


def eer_threshold(scores: ArrayLike, labels: ArrayLike, paper_faithful: bool = False, rule: str = "score") -> tuple[float, float]:
    """Equal-error-rate threshold θ and the EER.

    Candidates t are the unique scores in descending order; FMR(t) = mean(impostor ≥ t),
    FNMR(t) = mean(genuine < t). The EER candidate is the first argmin of |FMR − FNMR| (ties → the
    largest t) and EER = (FMR + FNMR) / 2 there. θ is that score (``rule="score"``, the original
    scripts' rule), or the midpoint between it and the next lower unique score (``rule="midpoint"``; the
    same decisions on these scores, but a pair whose score moves by float noise no longer flips; below
    the lowest score θ = lowest − ½, docs/decisions.md#eer-threshold).

    Args:
        scores: similarity per pair.
        labels: 1 for genuine pairs, 0 for impostor pairs.
        paper_faithful: θ is the EER score rounded to 4 decimals, as the original ``scores_eer.csv`` stored
            it (overrides ``rule``). The EER is the one at the unrounded threshold.
        rule: ``"score"`` or ``"midpoint"``.

    Raises:
        ValueError: lengths differ, non-finite scores, labels other than 0/1, only one class present, or an
            unknown ``rule``.
    """
    if rule not in ("score", "midpoint"):
        raise ValueError(f"rule must be 'score' or 'midpoint', got {rule!r}.")
    values = _as_array(scores, "scores")
    genuine = _as_labels(labels, values.size)
    if genuine.all() or not genuine.any():
        raise ValueError("eer_threshold needs both genuine (label 1) and impostor (label 0) pairs; got only one class.")
    check_similarities(values, genuine)
    candidates = np.unique(values)[::-1]
    impostor_sorted = np.sort(values[~genuine])
    genuine_sorted = np.sort(values[genuine])
    fmr = 1.0 - np.searchsorted(impostor_sorted, candidates, side="left") / impostor_sorted.size
    fnmr = np.searchsorted(genuine_sorted, candidates, side="left") / genuine_sorted.size
    best = int(np.argmin(np.abs(fmr - fnmr)))
    threshold = float(candidates[best])
    eer = float((fmr[best] + fnmr[best]) / 2)
    if paper_faithful:
        return round(threshold, 4), eer
    if rule == "midpoint":
        lower = float(candidates[best + 1]) if best + 1 < candidates.size else threshold - 1.0
        return (threshold + lower) / 2, eer
    return threshold, eer


def verification_accuracy(scores: ArrayLike, labels: ArrayLike, threshold: float) -> float:
    """Fraction of pairs decided correctly: mean(1{s ≥ θ} == label) (the boundary s = θ is a match)."""
    values = _as_array(scores, "scores")
    genuine = _as_labels(labels, values.size)
    return float(np.mean((values >= threshold) == genuine))


def embed(model: nn.Module, images: torch.Tensor, batch_size: int = FORWARD_BATCH) -> torch.Tensor:
    """Embeddings ``(N, D)`` of ``images`` ``(N, C, H, W)``, computed without gradients in batches (channels_last,
    :data:`~fame_utils.runtime.FORWARD_BATCH` images per pass by default: the fastest measured layout) on the
    network's BatchNorm-folded :func:`~fame_utils.models.folding.inference_copy`."""
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}.")
    network = inference_copy(model)
    with torch.no_grad():
        return torch.cat([network(fast_layout(chunk)).flatten(1) for chunk in images.split(batch_size)])


def cosine_scores(model: nn.Module, gallery: torch.Tensor, probes: torch.Tensor, batch_size: int = FORWARD_BATCH) -> torch.Tensor:
    """Cosine similarity ``(N,)`` between the embeddings of ``gallery[i]`` and ``probes[i]``."""
    if gallery.shape != probes.shape:
        raise ValueError(f"gallery and probes must have the same shape, got {tuple(gallery.shape)} and {tuple(probes.shape)}.")
    return torch.nn.functional.cosine_similarity(embed(model, gallery, batch_size), embed(model, probes, batch_size), dim=1)


@dataclass(frozen=True)
class VerificationCurves:
    """Result of the probe deletion/insertion sweep.

    Attributes:
        percents: the ratios P (%).
        deletion_scores, insertion_scores: cosine scores ``(P, N)`` of each pair at each ratio.
        labels: ``(N,)`` 1 genuine / 0 impostor.
        threshold: the decision threshold θ.
    """

    percents: tuple[float, ...]
    deletion_scores: np.ndarray
    insertion_scores: np.ndarray
    labels: np.ndarray
    threshold: float

    def correct(self, kind: str) -> np.ndarray:
        """Boolean ``(P, N)``: pair decided correctly at each ratio (``kind`` = "deletion" | "insertion")."""
        scores = {"deletion": self.deletion_scores, "insertion": self.insertion_scores}.get(kind)
        if scores is None:
            raise ValueError(f"kind must be 'deletion' or 'insertion', got {kind!r}.")
        return (scores >= self.threshold) == self.labels.astype(bool)[None, :]

    def with_threshold(self, threshold: float) -> "VerificationCurves":
        """The same sweep decided at another θ: the scores do not depend on θ, so no forward pass is repeated."""
        return replace(self, threshold=float(threshold))

    def subset(self, pairs: Sequence[int]) -> "VerificationCurves":
        """The same sweep restricted to the pairs at indices ``pairs`` (in that order)."""
        index = np.asarray(list(pairs), dtype=np.int64)
        return VerificationCurves(self.percents, self.deletion_scores[:, index], self.insertion_scores[:, index], self.labels[index], self.threshold)

    def pair_aucs(self, kind: str) -> np.ndarray:
        """Normalised AUC × 100 of each pair's own 0/1 correctness curve ``(N,)``; their mean is the sweep's AUC.

        The AUC is linear in the curve and the accuracy curve is the mean of the pairs' curves, so
        ``pair_aucs(kind).mean()`` equals ``deletion_auc`` / ``insertion_auc``: the per-pair values a paired test
        of two methods on the same pairs compares.
        """
        grid = np.asarray(self.percents, dtype=np.float64)
        return 100.0 * np.trapezoid(self.correct(kind).astype(np.float64), grid, axis=0) / (grid[-1] - grid[0])

    @property
    def deletion(self) -> np.ndarray:
        """Verification accuracy (fraction) per ratio when the top-P % probe pixels are blacked out."""
        return self.correct("deletion").mean(axis=1)

    @property
    def insertion(self) -> np.ndarray:
        """Verification accuracy (fraction) per ratio when only the top-P % probe pixels are kept."""
        return self.correct("insertion").mean(axis=1)

    @property
    def deletion_auc(self) -> float:
        """Normalised area under the deletion curve × 100 (lower is better)."""
        return 100.0 * normalized_auc(self.deletion, self.percents)

    @property
    def insertion_auc(self) -> float:
        """Normalised area under the insertion curve × 100 (higher is better)."""
        return 100.0 * normalized_auc(self.insertion, self.percents)


def deletion_insertion(
    model: nn.Module,
    gallery: torch.Tensor,
    probes: torch.Tensor,
    similar_maps: torch.Tensor,
    labels: ArrayLike,
    threshold: float,
    percents: Sequence[float] = DEFAULT_PERCENTS,
    batch_size: int = FORWARD_BATCH,
) -> VerificationCurves:
    """Probe-only deletion/insertion sweep (paper Sec. 4.3, docs/decisions.md#deletion-insertion-probe).

    For each P: keep = percentile masks of the probe's e₊ map (:func:`percentile_masks`: the top-P % ranked
    pixels, equal values in a seeded random order, so P = 100 inserts the whole probe); probe′ = probe × keep on every channel (removed pixels are 0, black in [0, 1]);
    s_i(P) = cos(φ(gallery_i), φ(probe′_i)); the gallery is untouched.

    Args:
        model: embedding network taking ``(N, C, H, W)`` images in [0, 1].
        gallery, probes: the pairs' images ``(N, C, H, W)`` in [0, 1].
        similar_maps: the probes' e₊ maps ``(N, H, W)``.
        labels: 1 genuine / 0 impostor, ``(N,)``.
        threshold: decision threshold θ (usually the clean EER threshold).
        percents: the ratios P (%).
        batch_size: images per embedding forward.

    Raises:
        ValueError: shapes or lengths that do not match.
    """
    if gallery.ndim != 4 or gallery.shape != probes.shape:
        raise ValueError(f"gallery and probes must both be (N, C, H, W) of one shape, got {tuple(gallery.shape)} and {tuple(probes.shape)}.")
    if similar_maps.shape != (probes.shape[0], *probes.shape[-2:]):
        raise ValueError(f"similar_maps must be (N, H, W) = {(probes.shape[0], *probes.shape[-2:])} to match the probes, got {tuple(similar_maps.shape)}.")
    truth = _as_labels(labels, probes.shape[0])
    masks = percentile_masks(similar_maps.detach().cpu(), percents)
    gallery_embeddings = embed(model, gallery, batch_size)
    known = {"clean": embed(model, probes, batch_size), "black": embed(model, torch.zeros_like(probes[:1]), 1)}
    curves = {}
    for kind, keep in (("deletion", masks.deletion), ("insertion", masks.insertion)):
        rows = []
        for index in tqdm(range(len(masks.deletion[0])), desc=f"{kind} sweep", leave=False):
            probe_embeddings = _masked_embeddings(model, probes, keep[:, index], known, batch_size)
            rows.append(torch.nn.functional.cosine_similarity(gallery_embeddings, probe_embeddings, dim=1).cpu().numpy())
        curves[kind] = np.stack(rows).astype(np.float64)
    return VerificationCurves(tuple(float(p) for p in percents), curves["deletion"], curves["insertion"], truth.astype(np.int64), float(threshold))


def _masked_embeddings(model: nn.Module, probes: torch.Tensor, keep: torch.Tensor, known: dict[str, torch.Tensor], batch_size: int) -> torch.Tensor:
    """Embeddings of ``probes × keep``: a probe kept whole is the clean probe and one with nothing kept the black image
    (``known["clean"]`` / ``known["black"]``, embedded once); only the partly masked probes are forwarded."""
    full, empty = mask_extent(keep)
    varied = ~(full | empty)
    result = known["clean"].clone()
    result[empty.to(result.device)] = known["black"][0]
    if varied.any():
        rows = varied.nonzero().squeeze(1).to(probes.device)
        partial = probes.index_select(0, rows) * keep.index_select(0, rows.cpu())[:, None].to(probes.device, probes.dtype)
        result[varied.to(result.device)] = embed(model, partial, batch_size)
    return result


def bootstrap_auc_interval(
    curves: VerificationCurves, kind: str, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC × 100, resampling pairs with replacement (:func:`~fame_utils.metrics.stats.bootstrap_interval`
    of the mean of :meth:`VerificationCurves.pair_aucs`).

    Raises:
        ValueError: ``kind`` unknown, ``n_boot`` < 1 or ``level`` outside (0, 1).
    """
    pair_aucs = curves.pair_aucs(kind)
    return bootstrap_interval(lambda drawn: pair_aucs[drawn].mean(axis=-1), pair_aucs.size, level, n_boot, seed)
