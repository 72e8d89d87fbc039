"""What one item of a protocol costs: its maps and the raw inputs of its metrics, for classification and verification.

Classification (Table 1): the map of one method for one photo, IoU at each τ for both box conventions, and the
raw ROAD deletion/insertion logits. Verification (Table 2): the probe's e₊ (and e₋) maps and the cosine scores
of the probe deletion/insertion sweep, at the split's clean EER threshold. The numbers of an item depend only on
the item, its chunk and the run's settings, never on the rank that computed it. Knows nothing about ranks,
files or tables.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from fame_utils.baselines import CLASSIFIER_METHODS, VERIFICATION_METHODS, centre_gaussian_maps, classifier_maps, explain_pairs, random_maps
from fame_utils.evaluation.classification import BOX_CONVENTIONS, ClassificationSample, prepare_samples
from fame_utils.fame import FameConfig
from fame_utils.metrics import DEFAULT_PERCENTS, IOU_THRESHOLDS, Normalizer, cosine_scores, deletion_insertion, eer_threshold, iou, road_curves
from fame_utils.models import ModelSpec
from fame_utils.protocols.catalogue import ClassificationItem, PairItem
from fame_utils.protocols.errors import ProtocolInputError

__all__ = [
    "ClassificationTask",
    "DEFAULT_METHODS",
    "METHODS",
    "VERIFICATION_REFERENCES",
    "VerificationTask",
    "check_methods",
    "chunk_seed",
]

#: Network-blind probe maps a verification table can carry as floors: name → maps(probes, seed).
_REFERENCE_MAPS = {
    "Centre Gaussian": lambda probes, seed: centre_gaussian_maps(probes),
    "Random": lambda probes, seed: random_maps(probes, seed=seed),
}
VERIFICATION_REFERENCES: tuple[str, ...] = tuple(_REFERENCE_MAPS)
#: Method names each task accepts.
METHODS: dict[str, tuple[str, ...]] = {"classification": CLASSIFIER_METHODS, "verification": (*VERIFICATION_METHODS, *VERIFICATION_REFERENCES)}
#: The paper's methods of Table 1 and Table 2.
DEFAULT_METHODS: dict[str, tuple[str, ...]] = {
    "classification": ("Grad-CAM", "Grad-CAM-EW", "HiResCAM", "FullGrad", "FAME"),
    "verification": VERIFICATION_METHODS,
}


def check_methods(task: str, methods: Sequence[str] | None) -> tuple[str, ...]:
    """The methods to run (the task's defaults for None), checked against the task's names.

    Raises:
        ProtocolInputError: an unknown or repeated method.
    """
    chosen = tuple(DEFAULT_METHODS[task] if not methods else methods)
    unknown = [m for m in chosen if m not in METHODS[task]]
    if unknown:
        raise ProtocolInputError(f"unknown {task} method(s) {unknown}; choose from: {', '.join(repr(m) for m in METHODS[task])}.")
    if len(set(chosen)) != len(chosen):
        raise ProtocolInputError(f"--methods lists a method twice: {list(chosen)}.")
    return chosen


def chunk_seed(seed: int, first_item: str) -> int:
    """Seed of a chunk's random draws, from the run seed and the chunk's first item id (not from its rank)."""
    return zlib.crc32(f"{seed}/{first_item}".encode())


def _half(maps: torch.Tensor) -> np.ndarray:
    return maps.detach().cpu().numpy().astype(np.float16)


@dataclass
class ClassificationTask:
    """Table 1 items: maps, IoU at each τ for both box conventions, ROAD deletion/insertion logits.

    Attributes:
        spec: the classifier.
        config: FAME hyperparameters.
        percents: ROAD ratios P; thresholds: IoU thresholds τ.
    """

    spec: ModelSpec
    config: FameConfig
    percents: tuple[float, ...] = tuple(float(p) for p in DEFAULT_PERCENTS)
    thresholds: tuple[float, ...] = IOU_THRESHOLDS

    kind = "classification"

    def __post_init__(self) -> None:
        if self.spec.task != "classification":
            raise ProtocolInputError(f"--network {self.spec.name} is a {self.spec.task} network; this protocol needs an ImageNet classifier.")
        self.normalizer = Normalizer.from_spec(self.spec)

    def settings(self) -> dict[str, Any]:
        """The settings that shape the numbers (kept in the run plan)."""
        return {"fame": asdict(self.config), "percents": list(self.percents), "thresholds": list(self.thresholds),
                "box_conventions": list(BOX_CONVENTIONS)}

    def prepare(self, items: Sequence[ClassificationItem]) -> dict[str, Any]:
        """Load and preprocess a chunk's photos once for all methods (boxes in both conventions)."""
        prepared = prepare_samples(self.spec, [ClassificationSample(item.item_id, item.load(), item.target, item.box) for item in items])
        return {"items": list(items), "tensors": torch.stack([p.tensor for p in prepared]).to(self.spec.device),
                "pixels": torch.stack([p.pixels for p in prepared]).to(self.spec.device), "boxes": [p.boxes for p in prepared]}

    def compute(self, method: str, chunk: dict[str, Any], seed: int, context: dict[str, np.ndarray] | None = None) -> list[dict[str, np.ndarray]]:
        """One stored record per item of the chunk: ``map`` (float16), ``iou`` (conventions × τ, NaN without a box),
        ``clean``, ``deletion``, ``insertion`` (ground-truth logits). Classification needs no split context."""
        items = chunk["items"]
        classes = [item.target for item in items]
        generator = torch.Generator().manual_seed(seed)
        maps = classifier_maps(method, self.spec.module, self.spec.target_layer, chunk["tensors"], classes, self.config, generator, self.normalizer).detach()
        curves = road_curves(self.spec.module, chunk["pixels"], maps.to(self.spec.device), classes, self.normalizer, self.percents)
        records = []
        for index, item in enumerate(items):
            scores = [[np.nan if box is None else iou(maps[index], box, tau) for tau in self.thresholds] for box in chunk["boxes"][index].values()]
            records.append({"map": _half(maps[index]), "target": np.int64(item.target), "iou": np.asarray(scores, dtype=np.float64),
                            "clean": curves.clean[index].numpy(), "deletion": curves.deletion[index].numpy(), "insertion": curves.insertion[index].numpy()})
        return records


@dataclass
class VerificationTask:
    """Table 2 items: the probe's maps against its gallery and the probe deletion/insertion cosine scores.

    Attributes:
        spec: the face-embedding network.
        config: FAME hyperparameters.
        n_masks: CorrRISE masks (one seeded set for every pair).
        seed: CorrRISE mask seed.
        percents: deletion/insertion ratios P.
    """

    spec: ModelSpec
    config: FameConfig
    n_masks: int = 500
    seed: int = 0
    percents: tuple[float, ...] = tuple(float(p) for p in DEFAULT_PERCENTS)

    kind = "verification"

    def __post_init__(self) -> None:
        if self.spec.task != "verification":
            raise ProtocolInputError(f"--network {self.spec.name} is a {self.spec.task} network; this protocol needs a face-embedding network.")

    def settings(self) -> dict[str, Any]:
        """The settings that shape the numbers (kept in the run plan)."""
        return {"fame": asdict(self.config), "percents": list(self.percents), "n_masks": self.n_masks}

    def prepare(self, items: Sequence[PairItem]) -> dict[str, Any]:
        """Load and preprocess a chunk's pairs once for all methods."""
        loaded = [item.load() for item in items]
        gallery = torch.stack([self.spec.preprocess(g) for g, _ in loaded]).to(self.spec.device)
        probes = torch.stack([self.spec.preprocess(p) for _, p in loaded]).to(self.spec.device)
        return {"items": list(items), "gallery": gallery, "probes": probes, "labels": np.array([int(item.genuine) for item in items])}

    def context(self, items: Sequence[PairItem], batch_size: int) -> dict[str, np.ndarray]:
        """Inputs shared by a split: clean cosine scores of every pair, labels and the EER threshold θ.

        Raises:
            ProtocolInputError: the split lacks genuine or impostor pairs (no EER threshold).
        """
        scores, labels = [], []
        for start in range(0, len(items), batch_size):
            chunk = self.prepare(items[start:start + batch_size])
            scores.append(cosine_scores(self.spec.module, chunk["gallery"], chunk["probes"]).cpu().numpy().astype(np.float64))
            labels.append(chunk["labels"])
        score, label = np.concatenate(scores), np.concatenate(labels)
        try:
            threshold, eer = eer_threshold(score, label, rule="midpoint")
        except ValueError as error:
            raise ProtocolInputError(f"split {items[0].split}: {error}") from error
        return {"item_ids": np.array([item.item_id for item in items]), "scores": score, "labels": label,
                "threshold": np.float64(threshold), "eer": np.float64(eer)}

    def compute(self, method: str, chunk: dict[str, Any], seed: int, context: dict[str, np.ndarray] | None = None) -> list[dict[str, np.ndarray]]:
        """One stored record per pair: ``similar`` (and ``dissimilar``) float16 maps of the probe, ``label``,
        ``deletion`` and ``insertion`` cosine scores per P, at the split's threshold θ (from :meth:`context`).

        Raises:
            ValueError: no split context was given.
        """
        if context is None:
            raise ValueError("verification items need their split's context (clean scores and EER threshold).")
        threshold = float(context["threshold"])
        gallery, probes = chunk["gallery"], chunk["probes"]
        if method in _REFERENCE_MAPS:
            maps = {"similar": _REFERENCE_MAPS[method](probes, seed), "dissimilar": None}
        else:
            maps = explain_pairs(self.spec.module, self.spec.target_layer, gallery, probes, threshold, methods=(method,), sides=("probe",),
                                 fame_config=self.config, n_masks=self.n_masks, seed=self.seed, use_cache=False)[method]["probe"]
        curves = deletion_insertion(self.spec.module, gallery, probes, maps["similar"], chunk["labels"], threshold, self.percents)
        records = []
        for index in range(len(chunk["items"])):
            record = {"similar": _half(maps["similar"][index]), "label": np.int64(chunk["labels"][index]),
                      "deletion": curves.deletion_scores[:, index], "insertion": curves.insertion_scores[:, index]}
            if maps.get("dissimilar") is not None:
                record["dissimilar"] = _half(maps["dissimilar"][index])
            records.append(record)
        return records
