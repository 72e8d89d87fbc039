"""CAM baselines through grad-cam, the sanity reference maps, Finer-FAME and the classifier registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import FinerCAM, FullGrad, GradCAM, GradCAMElementWise, HiResCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from fame_utils.baselines import (
    CAM_METHODS,
    EmptyMapWarning,
    cam_maps,
    centre_gaussian_maps,
    finer_cam,
    full_grad,
    grad_cam,
    grad_cam_ew,
    hires_cam,
    random_maps,
    similar_classes,
)
from fame_utils.metrics import Normalizer
from tiny_models import cam_classifier

LAYER = "features.3"


@pytest.fixture()
def model() -> nn.Module:
    return cam_classifier()


@pytest.fixture()
def images() -> torch.Tensor:
    return torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(3))


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [(grad_cam, GradCAM), (grad_cam_ew, GradCAMElementWise), (hires_cam, HiResCAM)],
)
def test_layer_cams_equal_direct_grad_cam_calls(model, images, ours, theirs):
    classes = [0, 3, 4]
    expected = theirs(model=model, target_layers=[model.features[3]])(input_tensor=images, targets=[ClassifierOutputTarget(c) for c in classes])
    result = ours(model, LAYER, images, classes)
    assert result.shape == (3, 16, 16) and result.dtype == torch.float32
    assert np.array_equal(result.numpy(), expected)


def test_full_grad_equals_direct_grad_cam_call(model, images):
    # Same map as the library's channel-by-channel OpenCV post-processing, up to float rounding.
    classes = [1, 2, 2]
    expected = FullGrad(model=model, target_layers=[])(input_tensor=images, targets=[ClassifierOutputTarget(c) for c in classes])
    np.testing.assert_allclose(full_grad(model, images, classes).numpy(), expected, atol=1e-6)


def test_full_grad_on_a_shipped_network_equals_the_library() -> None:
    from fame_utils.models import load_model

    spec = load_model("efficientnet_lite0")
    normalizer = Normalizer(spec.mean, spec.std)
    pixels = torch.rand(1, 3, spec.input_size, spec.input_size, generator=torch.Generator().manual_seed(0))
    expected = FullGrad(model=_PixelModel(spec.module, normalizer), target_layers=[])(input_tensor=pixels, targets=[ClassifierOutputTarget(281)])
    np.testing.assert_allclose(full_grad(spec.module, normalizer(pixels), [281], normalizer).numpy(), expected, atol=1e-5)


class _PixelModel(nn.Module):
    """The tiny classifier with a fixed normalisation (μ ≠ 0) inside: takes [0, 1] pixels."""

    def __init__(self, model: nn.Module, normalizer: Normalizer) -> None:
        super().__init__()
        self.model, self.normalizer = model, normalizer

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalizer(pixels))


def test_full_grad_runs_on_the_unit_image_with_the_normalisation_inside(model):
    normalizer = Normalizer((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    pixels = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    classes = [1, 2, 0]
    targets = [ClassifierOutputTarget(c) for c in classes]
    reference = FullGrad(model=_PixelModel(model, normalizer), target_layers=[])(input_tensor=pixels, targets=targets)
    ours = full_grad(model, normalizer(pixels), classes, normalizer)
    assert np.allclose(ours.numpy(), reference, atol=1e-5)
    on_normalised_tensor = full_grad(model, normalizer(pixels), classes)
    assert float((on_normalised_tensor - ours).abs().max()) > 0.05
    via_registry = classifier_maps("FullGrad", model, LAYER, normalizer(pixels), classes, normalizer=normalizer)
    assert torch.equal(via_registry, ours)


def test_finer_cam_equals_direct_finer_cam_with_target_index(model, images):
    # FinerCAM's own path ranks classes by |z_k − z_o| and subtracts ranks 1..3 with α.
    for alpha in (1.0, 0.6):
        for target in (0, 2):
            expected = FinerCAM(model, [model.features[3]])(images[:1], alpha=alpha, target_idx=target)
            result = finer_cam(model, LAYER, images[:1], [target], alpha=alpha)
            assert np.array_equal(result.numpy(), expected)


def test_finer_cam_without_contrast_is_grad_cam(model, images):
    # α = 0 leaves Σ_k p_k z_o / (Σ_k p_k + 1e-9) ≈ z_o, so the map is Grad-CAM's.
    plain = grad_cam(model, LAYER, images, [0, 1, 2])
    contrast_free = finer_cam(model, LAYER, images, [0, 1, 2], alpha=0.0)
    assert torch.allclose(plain, contrast_free, atol=1e-4)
    assert not torch.allclose(plain, finer_cam(model, LAYER, images, [0, 1, 2], alpha=1.0), atol=1e-2)


@pytest.mark.parametrize("method", list(CAM_METHODS))
def test_batch_of_three_targets_gives_three_different_maps(model, images, method):
    same_image = images[:1].expand(3, -1, -1, -1).contiguous()
    maps = cam_maps(method, model, LAYER, same_image, [0, 1, 4])
    assert maps.shape == (3, 16, 16)
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    for first, second in [(0, 1), (0, 2), (1, 2)]:
        assert not torch.allclose(maps[first], maps[second], atol=1e-4), (method, first, second)


@pytest.mark.parametrize("method", list(CAM_METHODS))
def test_map_of_an_image_does_not_depend_on_its_batch(model, images, method):
    batched = cam_maps(method, model, LAYER, images, [0, 1, 4])
    alone = cam_maps(method, model, LAYER, images[1:2], [1])
    assert torch.allclose(batched[1], alone[0], atol=1e-5)


@pytest.mark.parametrize("method", list(CAM_METHODS))
def test_target_list_of_wrong_length_raises(model, images, method):
    with pytest.raises(ValueError, match="3 images but 2 target classes"):
        cam_maps(method, model, LAYER, images, [0, 1])


@pytest.mark.parametrize("method", list(CAM_METHODS))
def test_hooks_are_released_after_success_and_after_errors(model, images, method):
    assert hook_count(model) == 0
    cam_maps(method, model, LAYER, images, [0, 1, 2])
    assert hook_count(model) == 0
    # an out-of-range class is refused before grad-cam hooks anything (grad-cam's own __exit__ would swallow its IndexError)
    with pytest.raises(ValueError, match=r"\[99\] are out of range"):
        cam_maps(method, model, LAYER, images, [0, 1, 99])
    assert hook_count(model) == 0


def test_unknown_method_and_bad_layer_raise(model, images):
    with pytest.raises(ValueError, match="unknown CAM method"):
        cam_maps("Score-CAM", model, LAYER, images, [0, 1, 2])
    with pytest.raises(ValueError, match="unknown layer"):
        grad_cam(model, "features.9", images, [0, 1, 2])


def test_all_zero_map_is_reported(model, images):
    with torch.no_grad():
        model.head.weight.zero_()
    with pytest.warns(EmptyMapWarning, match=r"Grad-CAM: all-zero map for image\(s\) \[0, 1, 2\]"):
        maps = grad_cam(model, LAYER, images, [0, 1, 2])
    assert not maps.any()


def test_similar_classes_rank_by_logit_distance_excluding_the_target():
    logits = torch.tensor([[0.0, 5.0, 4.5, 7.0, 1.0], [3.0, 2.0, 1.0, 0.0, -1.0]])
    assert similar_classes(logits, [1, 0], count=3) == [[2, 3, 4], [1, 2, 3]]
    with pytest.raises(ValueError, match="count"):
        similar_classes(logits, [1, 0], count=5)
    with pytest.raises(ValueError, match="one class per row"):
        similar_classes(logits, [1], count=2)


def test_random_maps_are_seeded_uniform_and_per_image(images):
    first = random_maps(images, seed=7)
    assert first.shape == (3, 16, 16)
    assert torch.equal(first, random_maps(images, seed=7))
    assert not torch.equal(first, random_maps(images, seed=8))
    assert not torch.equal(first[0], first[1])
    assert float(first.min()) >= 0.0 and float(first.max()) < 1.0
    generator = torch.Generator().manual_seed(7)
    assert torch.equal(random_maps(images, generator=generator), first)


def test_centre_gaussian_peaks_at_the_centre_and_is_symmetric():
    maps = centre_gaussian_maps(torch.zeros(2, 3, 9, 11), sigma=0.25)
    assert maps.shape == (2, 9, 11)
    assert float(maps[0, 4, 5]) == 1.0 and float(maps.min()) == 0.0
    assert torch.equal(maps[0], maps[0].flip(0)) and torch.allclose(maps[0], maps[0].flip(1))
    # exp(−d² / (2 s²)) with s = 0.25 · 9: one pixel right of the centre before min-max scaling.
    raw = torch.exp(torch.tensor(-1.0 / (2 * 2.25**2)))
    floor = torch.exp(torch.tensor(-(4.0**2 + 5.0**2) / (2 * 2.25**2)))
    assert float(maps[0, 4, 6]) == pytest.approx(float((raw - floor) / (1 - floor)), abs=1e-6)
    with pytest.raises(ValueError, match="sigma"):
        centre_gaussian_maps(torch.zeros(1, 3, 4, 4), sigma=0.0)


# ---------------------------------------------------------------- Finer-FAME (ours) and the method dispatcher
from fame_utils.baselines import CLASSIFIER_METHODS, LABELS, classifier_maps, finer_fame, finer_targets, method_label  # noqa: E402
from fame_utils.fame import FameConfig, explain_class, finer_loss  # noqa: E402

FAST = FameConfig(iterations=8, blur_kernel=5, blur_sigma=1.0)


def test_finer_fame_lowers_the_contrastive_target(model, images):
    from fame_utils.fame import optimize

    targets = finer_targets(model, images, [0, 1, 2], alpha=1.0)
    loss = finer_loss(model, targets)
    perturbed = optimize(images, loss, FAST.replace(iterations=20))
    with torch.no_grad():
        assert bool((loss(perturbed) < loss(images)).all())


def test_finer_fame_without_contrast_is_fame(model, images):
    plain = explain_class(model, images, [0, 1, 2], FAST)
    contrast_free = finer_fame(model, images, [0, 1, 2], FAST, alpha=0.0)
    assert torch.allclose(plain, contrast_free, atol=1e-3)
    contrast = finer_fame(model, images, [0, 1, 2], FAST, alpha=1.0)
    assert not torch.allclose(plain, contrast, atol=1e-2)


def test_finer_loss_rejects_a_partial_batch(model, images):
    loss = finer_loss(model, finer_targets(model, images, [0, 1, 2]))
    with pytest.raises(ValueError, match="2 samples but 3 targets"):
        loss(images[:2])


@pytest.mark.parametrize("method", CLASSIFIER_METHODS)
def test_every_classifier_method_gives_maps_in_unit_range(model, images, method):
    maps = classifier_maps(method, model, LAYER, images, [0, 3, 4], FAST, generator=torch.Generator().manual_seed(0))
    assert maps.shape == (3, 16, 16)
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0 and bool(torch.isfinite(maps).all())


def test_dispatcher_fame_variants_and_random_are_reproducible(model, images):
    fame = classifier_maps("FAME", model, LAYER, images, [0, 1, 2], FAST)
    assert torch.equal(fame, explain_class(model, images, [0, 1, 2], FAST))
    faithful = classifier_maps("FAME-paper-faithful", model, LAYER, images, [0, 1, 2], FAST)
    singles = [explain_class(model, images[i:i + 1], [c], FAST.replace(paper_faithful=True)) for i, c in enumerate([0, 1, 2])]
    torch.testing.assert_close(faithful, torch.cat(singles), atol=1e-5, rtol=0)  # batched: the same up to float rounding


def test_paper_faithful_maps_do_not_depend_on_the_batch(model, images):
    # A large ε makes the batch-mean early stop fire: run together, the photos would be coupled.
    with torch.no_grad():
        logits = model(images)[torch.arange(3), torch.tensor([0, 1, 2])].abs()
    config = FAST.replace(epsilon=float(logits.median()) + 1e-4)
    alone = classifier_maps("FAME-paper-faithful", model, LAYER, images[1:2], [1], config)
    together = classifier_maps("FAME-paper-faithful", model, LAYER, images, [0, 1, 2], config)
    torch.testing.assert_close(together[1:2], alone, atol=1e-5, rtol=0)
    first = classifier_maps("Random", model, LAYER, images, [0, 1, 2], generator=torch.Generator().manual_seed(5))
    second = classifier_maps("Random", model, LAYER, images, [0, 1, 2], generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, second)


def test_keys_dispatch_and_labels_only_name(model, images):
    assert set(LABELS) <= set(CLASSIFIER_METHODS)
    assert [method_label(key) for key in CLASSIFIER_METHODS] == [
        "Grad-CAM", "Grad-CAM-EW", "HiResCAM", "FullGrad", "Finer-CAM", "FAME", "FAME (paper-faithful)", "Finer-FAME (ours)", "Random", "Centre Gaussian"]
    assert torch.equal(classifier_maps("Finer-FAME", model, LAYER, images, [0, 1, 2], FAST), finer_fame(model, images, [0, 1, 2], FAST))
    for label in set(LABELS.values()):
        with pytest.raises(ValueError, match="unknown method"):
            classifier_maps(label, model, LAYER, images, [0, 1, 2], FAST)


def test_dispatcher_rejects_unknown_methods_and_length_mismatch(model, images):
    with pytest.raises(ValueError, match="unknown method"):
        classifier_maps("LIME", model, LAYER, images, [0, 1, 2])
    with pytest.raises(ValueError, match="3 images but 1 target classes"):
        classifier_maps("Random", model, LAYER, images, [0])
