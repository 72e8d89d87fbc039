"""Notebook 05 (face verification): the rows of the method sheets and the pair widget's data, gathered from explained
pairs (the figures themselves are :mod:`fame_utils.viz.faces`).

Only notebook 05 needs these; nothing else in the package imports them.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from fame_utils.data import face_pairs
from fame_utils.evaluation.verification import FacePairSet
from fame_utils.metrics.verification import VerificationCurves
from fame_utils.viz.faces import FacePairExplanations, SheetRow

__all__ = ["Explained", "sheet_rows", "showcase_pairs", "pair_identities", "pair_explanations", "findings", "method_seconds"]

Explained = Mapping[str, Mapping[str, Mapping[str, torch.Tensor | None]]]


def _position(explained_pairs: np.ndarray, pair: int) -> int:
    found = np.flatnonzero(np.asarray(explained_pairs) == pair)
    if found.size == 0:
        raise ValueError(f"pair {pair} was not explained; explained pairs: {np.asarray(explained_pairs).tolist()}.")
    return int(found[0])


def _maps_at(explained: Explained, side: str, positions: int | list[int], methods: Sequence[str]) -> dict:
    return {m: {k: (None if v is None else v[positions]) for k, v in explained[m][side].items()} for m in methods}


def sheet_rows(
    sets: Mapping[str, FacePairSet],
    explained: Mapping[str, Explained],
    explained_pairs: np.ndarray,
    pairs: Sequence[int],
    side: str,
    methods: Sequence[str],
    identities: Sequence[tuple[str, str]],
) -> list[SheetRow]:
    """One :class:`SheetRow` per (network, pair) for :func:`face_sheet`.

    Args:
        sets: the networks' pair sets.
        explained: per network, :func:`~fame_utils.baselines.verification.explain_pairs` output for ``explained_pairs``.
        explained_pairs: the pair indices that were explained, in explanation order.
        pairs: the pairs to show (indices into the pair set).
        side: ``"probe"`` or ``"gallery"`` (which image was explained; the maps are drawn over it).
        methods: methods to take maps of.
        identities: (gallery, probe) identity names of every pair of the set (:func:`pair_identities`).

    Raises:
        ValueError: a pair was not explained, or ``identities`` does not cover a pair set.
    """
    rows = []
    for name, pair_set in sets.items():
        _check_identities(identities, pair_set)
        for pair in pairs:
            kind = "genuine" if pair_set.labels[pair] else "impostor"
            rows.append(SheetRow(f"{name}\npair {pair} {kind}", pair_set.spec.to_display(pair_set.gallery[pair]),
                                 pair_set.spec.to_display(pair_set.probes[pair]), tuple(identities[pair]), side,
                                 _maps_at(explained[name], side, _position(explained_pairs, pair), methods)))
    return rows


def showcase_pairs(labels: Sequence[int], identities: Sequence[tuple[str, str]], per_type: int, among: Sequence[int] | None = None) -> np.ndarray:
    """``per_type`` genuine and ``per_type`` impostor pairs whose identities vary: each pick is the first pair (in pair
    order) sharing the fewest identities with the pairs picked before it, then repeating the fewest picked pairs of people,
    so the sheets show as many people as possible.

    Args:
        labels: 1 genuine / 0 impostor per pair.
        identities: (gallery, probe) identity names per pair.
        per_type: pairs of each type (fewer if there are fewer).
        among: the pairs to choose from (default: all), e.g. the evaluated ones.

    Returns:
        The chosen pair numbers in the order picked (genuine first): the first genuine and the first impostor pair share
        as few people as the pairs allow.

    Raises:
        ValueError: ``identities`` and ``labels`` differ in length, or ``per_type`` is negative.
    """
    labels = np.asarray(labels)
    if len(identities) != len(labels):
        raise ValueError(f"identities has {len(identities)} entries for {len(labels)} labels.")
    if per_type < 0:
        raise ValueError(f"per_type must be at least 0, got {per_type}.")
    candidates = sorted(int(pair) for pair in (range(len(labels)) if among is None else among))
    shown: set[str] = set()
    chosen: list[int] = []

    def repetition(pair: int) -> tuple[int, int]:
        people = set(identities[pair])
        return len(people & shown), sum(people == set(identities[other]) for other in chosen)

    for kind in (1, 0):
        pool = [pair for pair in candidates if labels[pair] == kind]
        for _ in range(min(per_type, len(pool))):
            pick = min(pool, key=repetition)
            pool.remove(pick)
            chosen.append(pick)
            shown |= set(identities[pick])
    return np.asarray(chosen, dtype=int)


def _check_identities(identities: Sequence[tuple[str, str]], pair_set: FacePairSet) -> None:
    if len(identities) != len(pair_set.labels):
        raise ValueError(f"identities has {len(identities)} entries for a pair set of {len(pair_set.labels)} pairs.")


def pair_identities() -> list[tuple[str, str]]:
    """(gallery, probe) identity names of every shipped pair, in pair-set order (:func:`fame_utils.data.face_pairs`)."""
    return [(pair.gallery_identity, pair.probe_identity) for pair in face_pairs()]


def pair_explanations(
    pair_set: FacePairSet,
    probe_side: Explained,
    evaluated: np.ndarray,
    gallery_side: Explained,
    showcase: np.ndarray,
    curves: Mapping[str, VerificationCurves],
    methods: Sequence[str],
    identities: Sequence[tuple[str, str]],
) -> FacePairExplanations:
    """The explorer's data for the ``showcase`` pairs: probe-side maps and curves (computed for ``evaluated``),
    gallery-side maps (computed for ``showcase``) and the pairs' identities (``identities[pair]``, every pair of the set).

    Raises:
        ValueError: a showcase pair was not evaluated, or ``identities`` does not cover the pair set.
    """
    _check_identities(identities, pair_set)
    positions = [_position(evaluated, pair) for pair in showcase]
    size = pair_set.gallery.shape[-2:]
    return FacePairExplanations(
        network=pair_set.network,
        pairs=np.asarray(showcase),
        identities=[tuple(identities[pair]) for pair in showcase],
        gallery_rgb=pair_set.spec.to_display(pair_set.gallery[showcase]).reshape(len(showcase), *size, 3),
        probe_rgb=pair_set.spec.to_display(pair_set.probes[showcase]).reshape(len(showcase), *size, 3),
        labels=pair_set.labels[showcase],
        maps={m: {"probe": _maps_at(probe_side, "probe", positions, [m])[m], "gallery": gallery_side[m]["gallery"]} for m in methods},
        curves={m: curves[m].subset(positions) for m in methods},
    )


def findings(table2: pd.DataFrame, table2_4dp: pd.DataFrame, impostors: Mapping[str, int], pairs: int,
             centre_share: Mapping[str, Mapping[str, float]], reference: str = "FAME") -> list[str]:
    """What Table 2 of this run shows, per network, as sentences with the numbers.

    Args:
        table2: :func:`~fame_utils.evaluation.verification.auc_table` at the default θ (index ``(network, method)``,
            columns ``deletion``, ``insertion``), methods and reference rankings.
        table2_4dp: the same at the original scripts' 4-decimal θ.
        impostors: impostor pairs among the evaluated ones, per network.
        pairs: number of evaluated pairs.
        centre_share: per network, each method's share of its e₊ mass in the central half of the crop (1 = uniform);
            a failing method's share on that network is quoted beside it.
        reference: the method the other sentences compare with.
    """
    lines = []
    for network, rows in table2.groupby(level="network", sort=False):
        rows = rows.droplevel("network")
        best = rows["insertion"].idxmax()
        failing = [m for m, row in rows.iterrows() if row.deletion >= row.insertion]
        on_network = centre_share.get(network, {})
        shares = ", ".join(f"{m} {on_network[m]:.2f}" for m in failing if m in on_network)
        faithful = table2_4dp.loc[(network, reference)]
        lines += [
            f"{network}: deletion AUC of every ranking lies in {rows['deletion'].min():.1f}–{rows['deletion'].max():.1f}, against an impostor "
            f"floor of {100 * impostors[network] / pairs:.1f} ({impostors[network]} of {pairs} pairs are impostors); {reference} {rows.loc[reference, 'deletion']:.1f}.",
            f"{network}: highest insertion AUC {best} {rows.loc[best, 'insertion']:.1f}; {reference} {rows.loc[reference, 'insertion']:.1f}; "
            + "; ".join(f"{m} {rows.loc[m, 'insertion']:.1f}" for m in rows.index if "reference" in m) + ".",
            f"{network}: deletion not below insertion (fails the basic sanity check) for: {', '.join(failing) or 'none'}"
            + (f" (centre share of their e₊ mass on {network}: {shares})" if shares else "") + ".",
            f"{network}: at the 4-decimal θ, {reference} scores deletion {faithful.deletion:.1f} / insertion {faithful.insertion:.1f} "
            f"(default θ: {rows.loc[reference, 'deletion']:.1f} / {rows.loc[reference, 'insertion']:.1f}).",
        ]
    return lines



def method_seconds(seconds: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """Where notebook 05's time went: one row per (network, method) with the wall seconds of its maps (both sides),
    slowest first, from the ``seconds`` dicts :func:`fame_utils.baselines.explain_pairs` filled."""
    rows = [{"network": network, "method": method, "maps (s)": round(value, 1)} for network, by_method in seconds.items() for method, value in by_method.items()]
    return pd.DataFrame(rows, columns=["network", "method", "maps (s)"]).sort_values("maps (s)", ascending=False, ignore_index=True)
