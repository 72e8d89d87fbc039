"""Every explanation method by key: one registry for classifiers, one for face verification.

A method key maps to the function that computes its maps, and separately to the label tables and figures show
(:func:`method_label`); the functions live in the mechanism modules
(:mod:`~fame_utils.baselines.cam`, :mod:`~fame_utils.baselines.gradient`, :mod:`~fame_utils.baselines.perturbation`,
:mod:`~fame_utils.baselines.reference`, :mod:`~fame_utils.baselines.finer`) and in :mod:`fame_utils.fame`.
Knows nothing of metrics, benchmarks or plotting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from fame_utils import cache
from fame_utils._checks import class_list
from fame_utils.baselines.cam import CAM_METHODS, full_grad, gradcam_ew_verification, gradcam_verification
from fame_utils.baselines.finer import finer_fame
from fame_utils.baselines.gradient import fggb
from fame_utils.baselines.perturbation import corrrise, corrrise_masks
from fame_utils.baselines.reference import centre_gaussian_maps, random_maps
from fame_utils.baselines.similarity import Maps
from fame_utils.fame import FameConfig, attribution, class_objective, explain_class, explain_verification, optimize
from fame_utils.layers import layer_name

__all__ = ["CLASSIFIER_METHODS", "SANITY_METHODS", "VERIFICATION_METHODS", "LABELS", "method_label", "classifier_maps", "explain_pairs"]

ClassifierFn = Callable[[nn.Module, Any, torch.Tensor, list[int], FameConfig, "torch.Generator | None", Any], torch.Tensor]
"""``fn(model, layer, images, classes, config, generator, normalizer)`` → ``(B, H, W)`` maps; each method uses what it needs."""


def _cam(cam: Callable[[nn.Module, Any, torch.Tensor, list[int]], torch.Tensor]) -> ClassifierFn:
    return lambda model, layer, images, classes, config, generator, normalizer: cam(model, layer, images, classes)


def _fame(model: nn.Module, layer: Any, images: torch.Tensor, classes: list[int], config: FameConfig, generator: Any, normalizer: Any) -> torch.Tensor:
    return explain_class(model, images, classes, config.replace(paper_faithful=False))


def _fame_paper_faithful(model: nn.Module, layer: Any, images: torch.Tensor, classes: list[int], config: FameConfig, generator: Any, normalizer: Any) -> torch.Tensor:
    """The original scripts' FAME (|z_o|, ε = 1e-3, min-max maps), which ran one image per batch.

    Their batch-mean early stop over a batch of one image is that image's own stop, so the images run together here
    with per-sample stopping: the maps of one image per batch, up to float rounding, at the batched speed.
    """
    faithful = config.replace(paper_faithful=True)
    loss, run_config = class_objective(model, class_list(classes, images.shape[0], "classes", "images"), faithful)
    with torch.enable_grad():
        perturbed = optimize(images, loss, run_config.replace(paper_faithful=False))
    return attribution(images, perturbed, faithful)


_CLASSIFIERS: dict[str, ClassifierFn] = {
    **{name: _cam(cam) for name, cam in CAM_METHODS.items()},
    "FullGrad": lambda model, layer, images, classes, config, generator, normalizer: full_grad(model, images, classes, normalizer),
    "FAME": _fame,
    "FAME-paper-faithful": _fame_paper_faithful,
    "Finer-FAME": lambda model, layer, images, classes, config, generator, normalizer: finer_fame(model, images, classes, config),
    "Random": lambda model, layer, images, classes, config, generator, normalizer: random_maps(images, generator=generator),
    "Centre Gaussian": lambda model, layer, images, classes, config, generator, normalizer: centre_gaussian_maps(images),
}

#: Display label of a method key where the two differ; every other key is shown as it is.
LABELS: dict[str, str] = {"FAME-paper-faithful": "FAME (paper-faithful)", "Finer-FAME": "Finer-FAME (ours)"}

#: Maps with no knowledge of the network; every table includes them as a floor.
SANITY_METHODS: tuple[str, ...] = ("Random", "Centre Gaussian")
#: All method keys accepted by :func:`classifier_maps`, in table order.
CLASSIFIER_METHODS: tuple[str, ...] = tuple(_CLASSIFIERS)
#: The methods of paper Tab. 2 / Figs. 3, 10–12, in the paper's order (accepted by :func:`explain_pairs`).
VERIFICATION_METHODS: tuple[str, ...] = ("Grad-CAM", "Grad-CAM-EW", "CorrRISE", "FGGB", "FAME")


#: The modules that compute verification maps (their source is part of every cache key of :func:`explain_pairs`).
_PAIR_CODE = ("fame_utils.fame", "fame_utils.baselines", "fame_utils.layers", "fame_utils.models")


def method_label(key: str) -> str:
    """The label tables and figures show for method ``key`` (``"Finer-FAME"`` → ``"Finer-FAME (ours)"``)."""
    return LABELS.get(key, key)


def classifier_maps(
    method: str,
    model: nn.Module,
    layer: nn.Module | str,
    images: torch.Tensor,
    classes: Sequence[int],
    config: FameConfig | None = None,
    generator: torch.Generator | None = None,
    normalizer: Any | None = None,
) -> torch.Tensor:
    """Maps ``(B, H, W)`` in [0, 1] from the method ``method`` (a key of :data:`CLASSIFIER_METHODS`).

    Args:
        method: method key.
        model: classifier in eval mode taking ``images`` (normalised).
        layer: CAM target layer (ignored by FullGrad, FAME and the sanity maps).
        images: ``(B, C, H, W)`` network input.
        classes: one (ground-truth) class per image.
        config: FAME hyperparameters for the FAME variants (``paper_faithful`` is set by the method key).
        generator: random source for ``"Random"`` (the session's generator makes runs reproducible).
        normalizer: the network's input normalisation ([0, 1] pixels → ``images``, with ``inverse``); FullGrad
            runs on the [0, 1] image through it (:func:`~fame_utils.baselines.cam.full_grad`).

    Raises:
        ValueError: unknown method, or ``classes`` does not have one entry per image.
    """
    if method not in _CLASSIFIERS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(CLASSIFIER_METHODS)}.")
    labels = class_list(classes, images.shape[0])
    return _CLASSIFIERS[method](model, layer, images, labels, config or FameConfig(), generator, normalizer)


def _maps_on_cpu(run: Callable[[torch.Tensor, torch.Tensor], Maps], explained: torch.Tensor, reference: torch.Tensor) -> Maps:
    maps = run(explained, reference)
    return {"similar": maps["similar"].detach().cpu(), "dissimilar": None if maps.get("dissimilar") is None else maps["dissimilar"].detach().cpu()}


def explain_pairs(
    model: nn.Module,
    target_layer: nn.Module | str,
    gallery: torch.Tensor,
    probes: torch.Tensor,
    threshold: float,
    methods: tuple[str, ...] = VERIFICATION_METHODS,
    sides: tuple[str, ...] = ("probe", "gallery"),
    fame_config: FameConfig | None = None,
    n_masks: int = 500,
    seed: int = 0,
    use_cache: bool = True,
    seconds: dict[str, float] | None = None,
) -> dict[str, dict[str, Maps]]:
    """Run every verification method on both sides of each pair.

    The probe side explains ``probes`` against the frozen ``gallery`` (the maps the deletion/insertion
    sweep uses), the gallery side the reverse. CorrRISE uses one seeded mask set for all pairs and
    sides; FGGB uses ``threshold`` as θ.

    Args:
        model: embedding network (input in [0, 1]).
        target_layer: CAM layer (module or dotted name).
        gallery, probes: the pairs' images ``(N, C, H, W)``.
        threshold: θ (the clean EER threshold) for FGGB.
        methods: keys from :data:`VERIFICATION_METHODS`.
        sides: ``"probe"`` and/or ``"gallery"``.
        fame_config: FAME hyperparameters (default :class:`FameConfig`).
        n_masks: CorrRISE masks.
        seed: CorrRISE mask seed.
        use_cache: serve each method's maps of a side from :mod:`fame_utils.cache` when computed before for the
            same network, batch and settings (pass False for runtime measurements and stores of their own).
        seconds: if given, each method's wall seconds over all asked sides are added to ``seconds[label]`` (near 0
            when served from the cache): where a run's time goes.

    Returns:
        ``result[label][side] = {"similar": (N, H, W), "dissimilar": (N, H, W) | None}``, keyed by :func:`method_label`.

    Raises:
        ValueError: unknown method or side, or gallery/probes of different shapes.
    """
    unknown = [name for name in methods if name not in VERIFICATION_METHODS] + [side for side in sides if side not in ("probe", "gallery")]
    if unknown:
        raise ValueError(f"unknown methods/sides {unknown}; methods are {VERIFICATION_METHODS}, sides 'probe' and 'gallery'.")
    if gallery.shape != probes.shape:
        raise ValueError(f"gallery and probes must have the same shape, got {tuple(gallery.shape)} and {tuple(probes.shape)}.")
    masks = corrrise_masks(n_masks, tuple(probes.shape[-2:]), seed=seed) if "CorrRISE" in methods else None
    runners: dict[str, Callable[[torch.Tensor, torch.Tensor], Maps]] = {
        "Grad-CAM": lambda x, r: gradcam_verification(model, target_layer, x, r),
        "Grad-CAM-EW": lambda x, r: gradcam_ew_verification(model, target_layer, x, r),
        "CorrRISE": lambda x, r: corrrise(model, x, r, masks=masks),
        "FGGB": lambda x, r: fggb(model, x, r, threshold),
        "FAME": lambda x, r: explain_verification(model, x, r, fame_config or FameConfig()),
    }
    settings = {"Grad-CAM": {"layer": layer_name(model, target_layer)}, "Grad-CAM-EW": {"layer": layer_name(model, target_layer)},
                "CorrRISE": {"n_masks": n_masks, "seed": seed}, "FGGB": {"threshold": threshold}, "FAME": {"fame": fame_config or FameConfig()}}
    caching = use_cache and cache.enabled()
    weights = cache.weights_digest(model) if caching else ""
    result: dict[str, dict[str, Maps]] = {}
    for name in tqdm(methods, desc="methods", leave=False):
        label = method_label(name)
        result[label] = {}
        started = time.perf_counter()
        for side in sides:
            explained, reference = (probes, gallery) if side == "probe" else (gallery, probes)
            compute = partial(_maps_on_cpu, runners[name], explained, reference)
            if not caching:
                result[label][side] = compute()
                continue
            key = cache.map_key(type(model).__name__, weights, [explained, reference], name, {**settings[name], "device": str(explained.device)}, _PAIR_CODE)
            result[label][side] = cache.cached(key, compute)
        if seconds is not None:
            seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - started
    return result
