"""Table 2 on a user's face protocol: every verification method's probe deletion/insertion AUC.

Used by notebook 05 for AR Face / SCface / CFP with the AdaFace IResNets when the user provides them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fame_utils.baselines.verification import VERIFICATION_METHODS, explain_pairs
from fame_utils.data.protocols import FACE_PROTOCOLS, ProtocolPair, load_face_protocol
from fame_utils.fame import FameConfig
from fame_utils.metrics.verification import cosine_scores, deletion_insertion, eer_threshold
from fame_utils.models import ModelSpec

__all__ = ["protocol_aucs", "user_protocol_table"]


def protocol_aucs(
    spec: ModelSpec,
    pairs: Sequence[ProtocolPair],
    fame_config: FameConfig,
    n_masks: int = 500,
    seed: int = 0,
    methods: tuple[str, ...] = VERIFICATION_METHODS,
) -> dict[str, tuple[float, float]]:
    """``{method: (deletion AUC, insertion AUC)}`` (× 100) for one protocol, θ = the clean EER threshold.

    Only the probe is perturbed, ranked by its own similar map (fame-method §6.5).

    Raises:
        ValueError: an empty protocol, or one without both genuine and impostor pairs.
    """
    if not pairs:
        raise ValueError("the protocol has no pairs.")
    crops = [pair.load() for pair in pairs]
    gallery = torch.stack([spec.preprocess(g) for g, _ in crops]).to(spec.device)
    probes = torch.stack([spec.preprocess(p) for _, p in crops]).to(spec.device)
    truth = np.array([pair.genuine for pair in pairs], dtype=int)
    theta, _ = eer_threshold(cosine_scores(spec.module, gallery, probes).cpu().numpy(), truth)
    explained = explain_pairs(spec.module, spec.target_layer, gallery, probes, theta, methods=methods, sides=("probe",),
                              fame_config=fame_config, n_masks=n_masks, seed=seed)
    aucs = {}
    for method in methods:
        curve = deletion_insertion(spec.module, gallery, probes, explained[method]["probe"]["similar"], truth, theta)
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
