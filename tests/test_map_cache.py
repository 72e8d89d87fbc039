"""The on-disk map cache: one computation per key, keys that change with everything that affects a map, and the
runners that use it giving the tables of an uncached run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from fame_utils import cache
from fame_utils.baselines import registry
from fame_utils.baselines.registry import classifier_maps
from fame_utils.evaluation import classification
from fame_utils.evaluation.classification import PreparedSample
from fame_utils.fame import FameConfig, explain_class
from fame_utils.metrics.classification import Normalizer
from fame_utils.workbook import nb03_atlas
from tiny_models import cam_classifier, cam_embedder, grid7_network, tanh_classifier


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FAME_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FAME_CACHE", raising=False)
    return tmp_path / "cache"


def key(**changes: object) -> str:
    parts = {
        "network": "tiny",
        "weights": tanh_classifier(),
        "inputs": [torch.zeros(1, 3, 8, 8)],
        "method": "FAME",
        "config": {"fame": FameConfig(iterations=3)},
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

    name = cache.map_key("tiny", model, [x], "FAME", {"fame": config}, ["fame_utils.fame"])
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
    assert key() == base == key(weights=cache.weights_digest(tanh_classifier()))
    changed_weights = tanh_classifier(seed=1)
    variants = [
        key(network="other"),
        key(weights=changed_weights),
        key(inputs=[torch.ones(1, 3, 8, 8)]),
        key(inputs=[torch.zeros(1, 3, 8, 8, dtype=torch.float64)]),
        key(method="Grad-CAM"),
        key(config={"fame": FameConfig(iterations=4)}),
        key(config={"fame": FameConfig(iterations=3, precision="bf16")}),
        key(config={"fame": FameConfig(iterations=3, memory_format="nchw")}),
        key(config={"fame": FameConfig(iterations=3, normalization="max")}),
        key(config={"fame": FameConfig(iterations=3, paper_faithful=True)}),
        key(config={"fame": FameConfig(iterations=3), "batch_size": 2}),
        key(code=["fame_utils.fame", "fame_utils.layers"]),
    ]
    assert base not in variants and len(set(variants)) == len(variants)
    assert cache.tensor_digest(torch.tensor(3)) != cache.tensor_digest(torch.tensor(4))  # 0-d buffers (BatchNorm's counter)


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


def test_disabled_computes_inside_the_block_only(private_cache: Path) -> None:
    calls = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return torch.ones(1)

    with cache.disabled():
        assert not cache.enabled()
        cache.cached("timed", compute)
    assert cache.enabled() and not private_cache.exists()
    cache.cached("timed", compute)
    cache.cached("timed", compute)
    assert len(calls) == 2  # once inside the block, once outside (then served)


# ---------------------------------------------------------------- the runners use it
def _tiny_benchmark_inputs() -> tuple[SimpleNamespace, list]:
    spec = SimpleNamespace(name="tiny", module=cam_classifier(), target_layer="features.3", device=torch.device("cpu"),
                           mean=(0.5,) * 3, std=(0.5,) * 3, bgr=False)
    normalizer = Normalizer.from_spec(spec)
    pixels = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    boxes = [(2, 2, 10, 12), (4, 0, 16, 8), None]
    samples = [PreparedSample(f"p{i}", i + 1, normalizer(pixels[i]), pixels[i], {"default": box, "paper-faithful": box}) for i, box in enumerate(boxes)]
    return spec, samples


def test_a_cached_benchmark_gives_the_uncached_tables_and_computes_each_map_once(monkeypatch: pytest.MonkeyPatch) -> None:
    spec, samples = _tiny_benchmark_inputs()
    computed: list[str] = []

    def spy(method: str, *args: object) -> torch.Tensor:
        computed.append(method)
        return classifier_maps(method, *args)

    monkeypatch.setattr(classification, "classifier_maps", spy)
    methods = ["FAME", "Grad-CAM", "Random", "FullGrad", "Centre Gaussian"]

    def run() -> classification.BenchmarkResult:
        computed.clear()
        return classification.run_benchmark(spec, samples, methods, FameConfig(iterations=3, blur_kernel=5, blur_sigma=1.5),
                                            torch.Generator().manual_seed(0), percents=(0, 50, 100), imputation=True, batch_size=2, progress=False)

    first = run()
    assert computed == [m for m in methods for _ in range(2)]  # two batches per method
    second = run()
    assert computed == ["Random", "Random"]  # the generator's draws stay those of an uncached run
    monkeypatch.setenv("FAME_CACHE", "off")
    uncached = run()
    assert len(computed) == 2 * len(methods)
    for result in (second, uncached):
        pd.testing.assert_frame_equal(result.records, first.records, check_exact=True)
        assert all(torch.equal(result.maps[m], first.maps[m]) for m in first.maps)
    assert not torch.equal(first.maps["FAME"], first.maps["Grad-CAM"])


def test_a_new_batch_composition_or_config_is_computed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    spec, samples = _tiny_benchmark_inputs()
    computed: list[str] = []
    monkeypatch.setattr(classification, "classifier_maps", lambda method, *args: computed.append(method) or classifier_maps(method, *args))
    config = FameConfig(iterations=2, blur_kernel=5, blur_sigma=1.5)
    for batch_size, iterations in ((2, 2), (3, 2), (2, 3), (2, 2)):
        classification.run_benchmark(spec, samples, ["FAME"], config.replace(iterations=iterations), percents=(0, 100), batch_size=batch_size, progress=False)
    assert len(computed) == 2 + 1 + 2  # the last run repeats the first and is served from the cache


def test_explained_pairs_are_served_from_the_cache_unless_asked_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    model = cam_embedder()
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    gallery, probes = images[:2], images[2:]
    computed: list[str] = []
    for name in ("explain_verification", "corrrise", "fggb", "gradcam_verification", "gradcam_ew_verification"):
        original = getattr(registry, name)
        monkeypatch.setattr(registry, name, lambda *args, _f=original, _n=name, **kwargs: computed.append(_n) or _f(*args, **kwargs))

    def explain(**changes: object) -> dict:
        computed.clear()
        return registry.explain_pairs(model, "body", gallery, probes, 0.3, **{"fame_config": FameConfig(iterations=2, blur_kernel=5, blur_sigma=1.5),
                                                                              "n_masks": 8, **changes})

    first = explain()
    assert len(computed) == 10  # five methods, two sides
    second = explain()
    assert computed == []
    served = [(first[m][side][kind], second[m][side][kind]) for m in first for side in first[m] for kind in ("similar", "dissimilar")]
    assert all(a is b is None or torch.equal(a, b) for a, b in served)
    explain(n_masks=9, methods=("CorrRISE",), sides=("probe",))
    assert computed == ["corrrise"]
    explain(use_cache=False)
    assert len(computed) == 10


def test_the_atlas_is_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = SimpleNamespace(module=grid7_network(), target_layer="3", to_display=lambda x: x.permute(1, 2, 0).numpy())
    image = torch.rand(3, 28, 28, generator=torch.Generator().manual_seed(2))
    computed: list[int] = []
    original = nb03_atlas.explain_locations
    monkeypatch.setattr(nb03_atlas, "explain_locations", lambda *args, **kwargs: computed.append(1) or original(*args, **kwargs))
    config = FameConfig(iterations=2, blur_kernel=5, blur_sigma=1.5)
    first = nb03_atlas.compute_atlas("tiny", spec, image, config, all_cells=False, progress=False)
    second = nb03_atlas.compute_atlas("tiny", spec, image, config, all_cells=False, progress=False)
    assert computed == [1]
    assert first.maps.keys() == second.maps.keys() and all(torch.equal(first.maps[k], second.maps[k]) for k in first.maps)
    assert torch.equal(first.fame_mass, second.fame_mass) and torch.equal(first.gradient_mass, second.gradient_mass)


class _Clock:
    """A fake ``time.perf_counter`` that only moves when a map is computed: seconds are exact, not measured."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_benchmark_seconds_count_computed_maps_and_not_cached_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    from fame_utils.workbook.nb04_classification import method_seconds

    spec, samples = _tiny_benchmark_inputs()
    clock = _Clock()

    def slow(method: str, *args: object) -> torch.Tensor:
        clock.now += 5.0 if method == "FAME" else 1.0
        return classifier_maps(method, *args)

    monkeypatch.setattr(classification, "classifier_maps", slow)
    monkeypatch.setattr(classification.time, "perf_counter", clock)
    config = FameConfig(iterations=2, blur_kernel=5, blur_sigma=1.5)

    def run() -> classification.BenchmarkResult:
        return classification.run_benchmark(spec, samples, ["FAME", "Grad-CAM", "Random"], config, torch.Generator().manual_seed(0),
                                            percents=(0, 100), batch_size=2, progress=False)

    first, second = run(), run()
    assert first.seconds == {m: {"maps": 2 * s, "curves": 0.0} for m, s in (("FAME", 5.0), ("Grad-CAM", 1.0), ("Random", 1.0))}  # two batches each
    assert second.seconds["FAME"]["maps"] == second.seconds["Grad-CAM"]["maps"] == 0.0  # served from the cache
    assert second.seconds["Random"]["maps"] == 2.0  # draws from the generator: never cached
    table = method_seconds({"tiny": first})
    assert table[["method", "maps (s)"]].values.tolist() == [["FAME", 10.0], ["Grad-CAM", 2.0], ["Random", 2.0]]


def test_explain_pairs_adds_each_methods_seconds_over_sides_and_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    from fame_utils.workbook.nb05_faces import method_seconds

    model = cam_embedder()
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    clock = _Clock()
    original = registry.fggb

    def slow_fggb(*args: object, **kwargs: object) -> dict:
        clock.now += 3.0
        return original(*args, **kwargs)

    monkeypatch.setattr(registry, "fggb", slow_fggb)
    monkeypatch.setattr(registry.time, "perf_counter", clock)
    monkeypatch.setenv("FAME_CACHE", "off")
    seconds: dict[str, float] = {}
    registry.explain_pairs(model, "body", images[:2], images[2:], 0.3, methods=("FGGB", "Grad-CAM"), seconds=seconds)
    registry.explain_pairs(model, "body", images[:1], images[2:3], 0.3, methods=("FGGB",), sides=("gallery",), seconds=seconds)
    assert seconds == {"FGGB": 3 * 3.0, "Grad-CAM": 0.0}  # two sides, then one more
    assert method_seconds({"tiny": seconds}).values.tolist() == [["tiny", "FGGB", 9.0], ["tiny", "Grad-CAM", 0.0]]
