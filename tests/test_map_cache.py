"""The on-disk map cache: one computation per key, keys that change with everything that affects a map."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fame_utils.evaluation import cache
from fame_utils.fame import FameConfig, explain_class
from tiny_models import tanh_classifier


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FAME_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FAME_CACHE", raising=False)
    return tmp_path / "cache"


def key(**changes: object) -> str:
    parts = {
        "network": "tiny",
        "model": tanh_classifier(),
        "inputs": [torch.zeros(1, 3, 8, 8)],
        "method": "FAME",
        "config": FameConfig(iterations=3).effective_settings(),
        "code": ["fame_utils.fame"],
        **changes,
    }
    return cache.map_key(**parts)


def test_a_map_is_computed_once_and_served_equal(private_cache: Path) -> None:
    model, x = tanh_classifier(), torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    config = FameConfig(step_size=0.01, iterations=3, blur_kernel=5, blur_sigma=1.5)
    calls = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return explain_class(model, x, [0, 1], config)

    name = cache.map_key("tiny", model, [x], "FAME", config.effective_settings(), ["fame_utils.fame"])
    first, second = cache.cached(name, compute), cache.cached(name, compute)
    assert len(calls) == 1 and torch.equal(first, second)
    assert [p.name for p in private_cache.iterdir()] == [f"{name}.pt"]  # no temporary file left behind


def test_dicts_of_maps_round_trip() -> None:
    maps = {"similar": torch.rand(2, 4, 4), "dissimilar": torch.rand(2, 4, 4)}
    cache.cached("pair", lambda: maps)
    served = cache.cached("pair", lambda: {})
    assert served.keys() == maps.keys() and all(torch.equal(served[k], maps[k]) for k in maps)


def test_the_key_changes_with_everything_that_affects_the_map() -> None:
    base = key()
    assert key() == base
    changed_weights = tanh_classifier(seed=1)
    variants = [
        key(network="other"),
        key(model=changed_weights),
        key(inputs=[torch.ones(1, 3, 8, 8)]),
        key(inputs=[torch.zeros(1, 3, 8, 8, dtype=torch.float64)]),
        key(method="Grad-CAM"),
        key(config=FameConfig(iterations=4).effective_settings()),
        key(config=FameConfig(iterations=3, precision="bf16").effective_settings()),
        key(code=["fame_utils.fame", "fame_utils.layers"]),
    ]
    assert base not in variants and len(set(variants)) == len(variants)


def test_editing_the_code_invalidates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "sub" / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(cache, "_PACKAGE_ROOT", package)
    before = cache.source_digest(["fame_utils.sub"])
    (package / "sub" / "a.py").write_text("x = 2\n")
    assert cache.source_digest(["fame_utils.sub"]) != before
    with pytest.raises(ValueError, match="no source file for module 'fame_utils.missing'"):
        cache.source_digest(["fame_utils.missing"])


def test_a_torn_file_is_recomputed(private_cache: Path) -> None:
    cache.cached("torn", lambda: torch.ones(2))
    (private_cache / "torn.pt").write_bytes(b"not a tensor")
    assert torch.equal(cache.cached("torn", lambda: torch.zeros(2)), torch.zeros(2))
    assert torch.equal(cache.cached("torn", lambda: torch.ones(2)), torch.zeros(2))


def test_cache_off_always_computes(private_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAME_CACHE", "off")
    calls = []
    for _ in range(2):
        cache.cached("off", lambda: calls.append(1) or torch.ones(1))
    assert len(calls) == 2 and not private_cache.exists()
