"""Notebook 01 (CAM's locality assumption): the networks' inputs, the trained-vs-random measurement, the verdict
table and its sentences, and the cell-explorer widget callback.

Only notebook 01 needs these; nothing else in the package imports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from fame_utils.data import face_pairs
from fame_utils.locality import effective_receptive_field, in_cell_mass, layer_grid, locality_by_stage, theoretical_receptive_field, view_position
from fame_utils.models import ModelSpec, load_model
from fame_utils.viz.locality import cell_figure

__all__ = ["NetworkView", "network_inputs", "trained_and_random_locality", "locality_verdict", "verdict_record", "verdict_lines",
           "show_cell", "show_network_cell"]


@dataclass(frozen=True)
class NetworkView:
    """What the locality figures and the widget need of one network: model, stages and one image."""

    model: nn.Module
    stages: Sequence[str]
    image: torch.Tensor
    display: np.ndarray


def network_inputs(spec: ModelSpec, photos: Sequence, count: int) -> list[tuple[str, torch.Tensor]]:
    """``(name, input)`` for the first ``count`` photos (classifier) or distinct shipped gallery faces (face network,
    aligned at the network's size when shipped at it, else at 112 px), through the network's preprocessing."""
    if spec.task == "classification":
        return [(photo.name, spec.preprocess(photo.image)) for photo in photos[:count]]
    faces = {}
    for pair in face_pairs(size=spec.input_size if spec.input_size in (112, 150) else 112):
        faces.setdefault(pair.gallery_id, pair.gallery)
    return [(face_id, spec.preprocess(image)) for face_id, image in list(faces.items())[:count]]


def trained_and_random_locality(
    specs: dict, inputs: dict[str, list[tuple[str, torch.Tensor]]], max_cells: int = 16, seed: int = 0
) -> pd.DataFrame:
    """:func:`locality_by_stage` for every network with its trained weights and with seeded random weights (the control).

    Args:
        specs: loaded networks by name (:class:`~fame_utils.models.ModelSpec`).
        inputs: per network, ``(image name, input)`` from :func:`network_inputs`.
        max_cells: locations sampled per stage.
        seed: location sampling seed.
    """
    frames = []
    for name, spec in specs.items():
        names, images = [n for n, _ in inputs[name]], [x for _, x in inputs[name]]
        random_module = load_model(name, weights=None, device=spec.device).module
        for weights, module in (("trained", spec.module), ("random", random_module)):
            frames.append(locality_by_stage(module, spec.stages, images, network=name, weights=weights, image_names=names, max_cells=max_cells, seed=seed))
    return pd.concat(frames, ignore_index=True)


_VERDICT_RECORD = {
    "cam_layer_mass": ("trained", "target_mass"), "cam_layer_mass_high": ("trained", "target_high"),
    "cam_layer_uniform": ("trained", "target_uniform"), "cam_layer_ratio": ("trained", "target_ratio"),
    "first_stage_mass": ("trained", "first_mass"), "first_stage_ratio": ("trained", "first_ratio"),
    "last_stage_mass": ("trained", "last_mass"), "random_cam_layer_mass": ("random", "target_mass"),
    "random_cam_layer_ratio": ("random", "target_ratio"), "random_first_stage_ratio": ("random", "first_ratio"),
}


def verdict_record(verdict: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The numbers notebook 01 records from a :func:`locality_verdict` table, keyed ``{quantity: {network: value}}``
    (trained weights unless the quantity starts with ``random_``)."""
    by_weights = {weights: group.set_index("network") for weights, group in verdict.groupby("weights")}
    return {key: {network: float(value) for network, value in by_weights[weights][column].items()}
            for key, (weights, column) in _VERDICT_RECORD.items() if weights in by_weights}


def verdict_lines(verdict: pd.DataFrame) -> list[str]:
    """One sentence per network: ρ at the CAM layer against uniform, ρ/uniform from the first stage to the CAM
    layer, and how the seeded random-weight control compares."""
    trained = verdict[verdict["weights"] == "trained"].set_index("network")
    random_ = verdict[verdict["weights"] == "random"].set_index("network")
    lines = []
    for name, t in trained.iterrows():
        line = (f"{name:20s} CAM layer {t.target_stage}: rho = {t.target_mass:.2f} (uniform {t.target_uniform:.3f}); "
                f"rho/uniform: first stage {t.first_ratio:.0f}x, CAM layer {t.target_ratio:.1f}x")
        if name in random_.index:
            r = random_.loc[name]
            line += (f"; random weights at CAM layer: rho = {r.target_mass:.2f} "
                     f"({'more' if r.target_mass > t.target_mass else 'less'} in-cell than trained)")
        lines.append(line)
    return lines


def locality_verdict(summary: pd.DataFrame, target_layers: dict[str, str]) -> pd.DataFrame:
    """Per network and weights: ρ at the first stage, at the CAM target layer and at the last stage,
    with the uniform baselines and ratios ρ/ρ_uniform (how concentrated relative to a uniform map)."""
    rows = []
    for (network, weights), group in summary.groupby(["network", "weights"], sort=False):
        group = group.sort_values("stage_index")
        first, last = group.iloc[0], group.iloc[-1]
        target = group[group["stage"] == target_layers.get(network, last["stage"])]
        target = target.iloc[0] if not target.empty else last
        rows.append(dict(network=network, weights=weights, first_stage=first["stage"], first_mass=first["mass"], first_ratio=first["ratio"],
                         target_stage=target["stage"], target_mass=target["mass"], target_low=target["low"], target_high=target["high"],
                         target_uniform=target["uniform"], target_ratio=target["ratio"], last_mass=last["mass"], last_ratio=last["ratio"]))
    return pd.DataFrame(rows)



def show_cell(
    model: nn.Module, stages: Sequence[str], image: torch.Tensor, display: np.ndarray, stage: str, row: int, col: int, view_grid: int = 7, title: str = ""
) -> Figure:
    """Widget callback: one cell's gradient map with its CAM cell (white) and receptive field (cyan).

    Args:
        model: the network; ``stages`` its stage names; ``stage`` one of them.
        image: preprocessed ``(C, H, W)`` input; ``display``: the same image as ``(H, W, 3)`` in [0, 1].
        row, col: position on a ``view_grid × view_grid`` grid (mapped onto the stage's grid).

    Returns:
        The matplotlib figure; its ``cell_mass`` attribute holds ρ of the shown cell (None when the
        cell's gradient is all zero).
    """
    if stage not in stages:
        raise ValueError(f"stage {stage!r} is not one of {list(stages)}.")
    grid = layer_grid(model, stage, image.shape[-3:])
    location = view_position(row, col, view_grid, grid)
    gradient = effective_receptive_field(model, stage, image, location)
    field = theoretical_receptive_field(model, stage, image.shape[-3:], location)
    mass = float(in_cell_mass(gradient[None], grid, [location])[0]) if gradient.sum() > 0 else None
    fig = cell_figure(display, gradient, location, grid, field, mass, f"{title} {stage} cell {location} of {grid[0]}×{grid[1]}".strip())
    fig.cell_mass = mass
    return fig


def show_network_cell(views: dict[str, NetworkView], network: str, stage_index: int, row: int, col: int, view_grid: int = 7) -> Figure:
    """Widget callback: :func:`show_cell` for ``views[network]`` at stage ``stage_index`` (clamped to
    the network's last stage, since networks have different numbers of stages)."""
    if network not in views:
        raise ValueError(f"unknown network {network!r}; choose one of {list(views)}.")
    view = views[network]
    stage = view.stages[min(max(stage_index, 0), len(view.stages) - 1)]
    return show_cell(view.model, view.stages, view.image, view.display, stage, row, col, view_grid, title=network)
