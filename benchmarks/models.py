"""Load time and forward+backward time of every shipped network (printed as a table; not a test).

Run: ``.venv/bin/python benchmarks/models.py``. Load times are cold (the per-process weight caches are
cleared first); fwd+bwd is the median of 5 passes (batch 1, gradient w.r.t. the input) after one warm-up.
"""

from __future__ import annotations

import statistics
import time

import pandas as pd
import torch

from fame_utils.models import load_model
from fame_utils.models.checkpoints import clear_checkpoint_cache
from fame_utils.models.spec import ModelSpec

SHIPPED = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "sface", "dlib_resnet"]


def _clear_weight_caches() -> None:
    clear_checkpoint_cache()


def _forward_backward_seconds(spec: ModelSpec, repeats: int = 5) -> float:
    """Median seconds of one forward pass and the backward pass to the input."""
    x = torch.rand(1, 3, spec.input_size, spec.input_size, generator=torch.Generator().manual_seed(0), device=spec.device)
    timings = []
    for _ in range(repeats + 1):
        image = x.clone().requires_grad_(True)
        start = time.perf_counter()
        spec.module(image).norm().backward()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings[1:])


def benchmark(names: list[str]) -> pd.DataFrame:
    """One row per network: parameters, input size, load seconds, fwd+bwd milliseconds."""
    rows = []
    for name in names:
        _clear_weight_caches()
        start = time.perf_counter()
        spec = load_model(name)
        load_seconds = time.perf_counter() - start
        rows.append(
            {
                "network": name,
                "task": spec.task,
                "input": f"{spec.input_size}×{spec.input_size}",
                "parameters (M)": round(sum(p.numel() for p in spec.module.parameters()) / 1e6, 2),
                "load (s)": round(load_seconds, 3),
                "fwd+bwd, batch 1 (ms)": round(1000 * _forward_backward_seconds(spec), 1),
            }
        )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {load_model('sface', weights=None).device}")
    print(benchmark(SHIPPED).to_markdown(index=False))
