"""Shared pytest fixtures. Helpers append their fixtures below; keep each one small and seeded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def smoke_results(stem: str) -> dict:
    """Recorded numbers of notebook ``stem`` from the smoke run in ``$FAME_SMOKE_DIR`` (skip if absent)."""
    smoke_dir = os.environ.get("FAME_SMOKE_DIR")
    if not smoke_dir:
        pytest.skip("FAME_SMOKE_DIR is not set: run `make notebooks` (smoke profile) to check notebook results")
    path = Path(smoke_dir) / "executed" / f"{stem}.json"
    if not path.exists():
        pytest.fail(f"{path} is missing: notebook {stem} did not record its numbers in the smoke run")
    return json.loads(path.read_text())


def pointwise_net():
    """1×1 convolution with positive weights, ReLU, non-overlapping 4×4 average pooling (seeded): on a 16×16 input,
    feature-map location k sees exactly its own 4×4 cell."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.AvgPool2d(4))
    with torch.no_grad():
        net[0].weight.uniform_(0.1, 1.0)
        net[0].bias.fill_(0.1)
    return net.eval()
