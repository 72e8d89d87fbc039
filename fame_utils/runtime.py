"""Device selection and seeding: one place for both, so runs are reproducible."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["resolve_device", "seed_everything"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device to use.

    Args:
        device: ``"auto"`` picks CUDA, then Apple MPS, then the CPU; anything else is passed to
            ``torch.device``.

    Raises:
        ValueError: if an explicit accelerator is requested but not available.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available; use device='auto' or 'cpu'.")
    if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device={device!r} was requested but MPS is not available; use device='auto' or 'cpu'.")
    return resolved


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) and return a seeded CPU generator.

    Same seed, same maps on the CPU: every random draw in the workbook goes through these generators.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
