"""Properties of the FAME core (paper Sec. 3, Eqs. 3–6) on tiny seeded models with hand-computed expectations."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torchvision.transforms.functional import rgb_to_grayscale

from fame_utils import fame
from fame_utils.fame import explain as fame_explain
from fame_utils.fame import (
    FameConfig,
    OptimizationTrace,
    attribution,
    blur_map,
    class_loss,
    class_objective,
    cosine_similarity,
    explain_class,
    explain_locations,
    explain_verification,
    location_loss,
    normalize_map,
    optimize,
    to_gray,
    verification_loss,
)
from fame_utils.layers import resolve_layer
from tiny_models import LinearLogit, Recorder, cell_network, grid7_network, pooled_embedder, tanh_classifier

ETA = 0.01


def images(batch: int = 2, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def no_blur(**changes: object) -> FameConfig:
    return FameConfig(**{"step_size": ETA, "iterations": 5, "blur_kernel": None, **changes})


# --- configuration ---------------------------------------------------------------------------------


def test_defaults_match_the_paper() -> None:
    config = FameConfig()
    assert (config.step_size, config.iterations, config.blur_kernel, config.blur_sigma) == (1 / 255, 500, 49, 7.7)
    assert (config.clamp, config.epsilon, config.normalization, config.paper_faithful) == (None, None, "minmax", False)
    assert config.effective_normalization == "minmax" and config.early_stop_rule == "per-sample" and config.class_epsilon() is None


def test_paper_faithful_effective_settings() -> None:
    config = FameConfig(paper_faithful=True)
    assert config.effective_normalization == "minmax"  # the original scripts' min-max; the paper's text is its own knob
    assert FameConfig(paper_faithful=True, normalization="max").effective_normalization == "max"
    assert config.early_stop_rule == "batch-mean"
    assert config.class_epsilon() == 1e-3
    assert FameConfig(paper_faithful=True, epsilon=0.5).class_epsilon() == 0.5
    settings = config.effective_settings()
    assert settings["class_loss"] == "|z_o|" and settings["normalization"] == "minmax"


def test_even_blur_kernel_is_made_odd_and_config_is_frozen() -> None:
    config = FameConfig(blur_kernel=48)
    assert config.blur_kernel == 49
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.iterations = 3  # type: ignore[misc]
    assert config.replace(iterations=3).iterations == 3


@pytest.mark.parametrize(
    "changes",
    [{"step_size": 0}, {"step_size": -1.0}, {"iterations": -1}, {"iterations": 2.5}, {"normalization": "l2"},
     {"blur_kernel": 0}, {"blur_sigma": 0.0}, {"clamp": (1.0, 0.0)}, {"epsilon": float("nan")}],
)
def test_invalid_config_is_rejected(changes: dict) -> None:
    with pytest.raises(ValueError, match="FameConfig"):
        FameConfig(**changes)


# --- optimiser ---------------------------------------------------------------------------------------


def test_step_size_bounds_the_perturbation() -> None:
    model, x = tanh_classifier(), images()
    for steps in (1, 3, 7):
        perturbed = optimize(x, class_loss(model, [0, 1]), no_blur(iterations=steps))
        assert (perturbed - x).abs().max() <= steps * ETA + 1e-7


def test_largest_gradient_element_moves_exactly_eta() -> None:
    model, x = tanh_classifier(), images(batch=1)
    grad_input = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(grad_input)[0, 2], grad_input)
    delta = optimize(x, class_loss(model, [2]), no_blur(iterations=1)) - x
    top = grad.abs().flatten().argmax()
    assert delta.flatten()[top].item() == pytest.approx(-ETA * grad.flatten()[top].sign().item(), abs=1e-7)
    assert delta.abs().max().item() == pytest.approx(ETA, abs=1e-7)
    torch.testing.assert_close(delta, -ETA * grad / grad.abs().max(), atol=1e-7, rtol=0)


def test_optimize_descends_and_leaves_input_untouched() -> None:
    model, x = tanh_classifier(), images()
    original = x.clone()
    loss = class_loss(model, [0, 3])
    perturbed = optimize(x, loss, no_blur(iterations=50))
    assert torch.equal(x, original)
    assert not perturbed.requires_grad
    assert bool((loss(perturbed) < loss(x)).all())


def test_batch_equals_per_sample_runs_with_very_different_gradient_scales() -> None:
    model, x = tanh_classifier(), images(batch=3)
    scales = torch.tensor([1.0, 1e4, 1e-4])

    def scaled(batch_x: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        return model(batch_x)[:, 1] * which

    config = no_blur(iterations=6)
    batched = optimize(x, lambda b: scaled(b, scales), config)
    for i in range(3):
        alone = optimize(x[i : i + 1], lambda b, s=scales[i : i + 1]: scaled(b, s), config)
        torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-6, rtol=0)


def offset_linear_loss() -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """Loss w·x + c_b whose drop per step is exactly η·Σw²/max|w| = 16η (w = ±1 on 16 elements of channel 0).

    The offset c_b is stored in channel 1 (weight 0, read without gradient), so it travels with its sample
    whatever the batch: c = 0.5 for sample 0 (below ε = 0.2 after two steps), 10 for sample 1 (never).
    """
    weight = torch.zeros(3, 4, 4)
    weight[0] = torch.tensor([[1.0, -1, 1, -1]] * 4)
    model = LinearLogit(weight)
    x = torch.zeros(2, 3, 4, 4)
    x[:, 1, 0, 0] = torch.tensor([0.5, 10.0])
    return (lambda b: model(b)[:, 0] + b.detach()[:, 1, 0, 0]), x


def test_per_sample_early_stop_freezes_converged_samples_only() -> None:
    loss, x = offset_linear_loss()
    config = no_blur(iterations=10, epsilon=0.2)
    batched = optimize(x, loss, config)
    for i in range(2):
        torch.testing.assert_close(batched[i : i + 1], optimize(x[i : i + 1], loss, config), atol=0, rtol=0)
    # sample 0: loss 0.5 → 0.34 → 0.18 < 0.2: exactly two steps; sample 1 takes all ten
    assert (batched[0] - x[0]).abs().max().item() == pytest.approx(2 * ETA, abs=1e-7)
    assert (batched[1] - x[1]).abs().max().item() == pytest.approx(10 * ETA, abs=1e-7)


def test_paper_faithful_batch_mean_rule_couples_samples() -> None:
    loss, x = offset_linear_loss()
    config = no_blur(iterations=10, epsilon=0.2, paper_faithful=True)
    batched = optimize(x, loss, config)
    alone = optimize(x[:1], loss, config)
    # alone, sample 0 stops after 2 steps; in the batch the mean stays above ε, so it keeps moving
    assert (alone - x[:1]).abs().max().item() == pytest.approx(2 * ETA, abs=1e-7)
    assert (batched[0] - x[0]).abs().max().item() == pytest.approx(10 * ETA, abs=1e-7)


def test_huge_epsilon_returns_the_image_untouched() -> None:
    model, x = tanh_classifier(), images()
    for paper_faithful in (False, True):
        perturbed = optimize(x, class_loss(model, [0, 1]), no_blur(epsilon=1e9, paper_faithful=paper_faithful))
        assert torch.equal(perturbed, x)
        assert torch.equal(attribution(x, perturbed, no_blur()), torch.zeros(2, 16, 16))


def test_clamp_keeps_the_image_in_range() -> None:
    model, x = tanh_classifier(), images()
    perturbed = optimize(x, class_loss(model, [0, 1]), no_blur(step_size=0.5, iterations=4, clamp=(0.0, 1.0)))
    assert perturbed.min() >= 0 and perturbed.max() <= 1
    assert bool((perturbed == 0).any() or (perturbed == 1).any())


def test_loss_evaluations_and_trace() -> None:
    model, x = tanh_classifier(), images()
    calls = []
    loss = class_loss(model, [0, 1])

    def counted(b: torch.Tensor) -> torch.Tensor:
        calls.append(b.shape[0])
        return loss(b)

    optimize(x, counted, no_blur(iterations=7))
    assert len(calls) == 7
    trace = OptimizationTrace(snapshot_steps=(0, 1, 7, 100))
    final = optimize(x, loss, no_blur(iterations=7), trace=trace)
    assert trace.steps == 7 and trace.losses.shape == (8, 2)
    assert sorted(trace.snapshots) == [0, 1, 7]
    assert torch.equal(trace.snapshots[0], x) and torch.equal(trace.snapshots[7], final)
    torch.testing.assert_close(trace.losses[0], loss(x).detach())
    torch.testing.assert_close(trace.losses[-1], loss(final).detach())


def test_loss_with_wrong_shape_is_rejected() -> None:
    model, x = tanh_classifier(), images()
    with pytest.raises(ValueError, match="one loss per sample"):
        optimize(x, lambda b: model(b)[:, 0].sum(), no_blur())


@pytest.mark.parametrize(
    "bad, message",
    [(torch.rand(3, 8, 8), "4 dimensions"), (torch.full((1, 3, 8, 8), float("nan")), "NaN"), (torch.zeros(1, 3, 8, 8, dtype=torch.long), "floating")],
)
def test_bad_images_are_rejected(bad: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        optimize(bad, lambda b: b.sum(dim=(1, 2, 3)), no_blur())


# --- attribution -------------------------------------------------------------------------------------


def test_linear_model_gives_the_analytic_map() -> None:
    weight = torch.randn(3, 6, 6, generator=torch.Generator().manual_seed(3))
    model, x, steps = LinearLogit(weight), images(batch=1, size=6), 4
    perturbed = optimize(x, class_loss(model, [0]), no_blur(iterations=steps))
    # constant gradient w: x̄ − x = −n·η·w / max|w|
    torch.testing.assert_close(perturbed - x, -steps * ETA * weight[None] / weight.abs().max(), atol=1e-6, rtol=0)
    luma = (0.2989 * weight[0] + 0.587 * weight[1] + 0.114 * weight[2]).abs()
    expected = (luma - luma.min()) / (luma.max() - luma.min())
    torch.testing.assert_close(attribution(x, perturbed, no_blur())[0], expected, atol=1e-5, rtol=0)


def test_attribution_shape_range_and_both_normalisations() -> None:
    x = images()
    perturbed = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    for mode in ("minmax", "max"):
        maps = attribution(x, perturbed, FameConfig(blur_kernel=5, blur_sigma=2.0, normalization=mode))
        assert maps.shape == (2, 16, 16) and maps.dtype == x.dtype
        assert torch.allclose(maps.amax(dim=(1, 2)), torch.ones(2), atol=1e-6)
        if mode == "minmax":
            assert torch.equal(maps.amin(dim=(1, 2)), torch.zeros(2))
        else:
            assert bool((maps.amin(dim=(1, 2)) > 0).all())


def test_normalisation_is_independent_of_paper_faithful() -> None:
    x = images()
    perturbed = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    blurred = FameConfig(blur_kernel=5, blur_sigma=2.0)
    for mode in ("minmax", "max"):
        torch.testing.assert_close(attribution(x, perturbed, blurred.replace(paper_faithful=True, normalization=mode)), attribution(x, perturbed, blurred.replace(normalization=mode)))
    assert not torch.allclose(attribution(x, perturbed, blurred), attribution(x, perturbed, blurred.replace(normalization="max")))


def test_attribution_ignores_the_sign_of_the_perturbation() -> None:
    x = images()
    delta = 0.03 * torch.randn(x.shape, generator=torch.Generator().manual_seed(6))
    config = FameConfig(blur_kernel=7, blur_sigma=2.0)
    torch.testing.assert_close(attribution(x, x + delta, config), attribution(x, x - delta, config), atol=1e-5, rtol=0)


def test_zero_perturbation_gives_an_all_zero_map() -> None:
    x = images()
    for mode in ("minmax", "max"):
        maps = attribution(x, x.clone(), FameConfig(blur_kernel=5, blur_sigma=1.0, normalization=mode))
        assert torch.equal(maps, torch.zeros(2, 16, 16))


def test_prescale_is_redundant() -> None:
    x = images()
    perturbed = x + 1e-3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    config = FameConfig(blur_kernel=5, blur_sigma=2.0)
    without = normalize_map(blur_map((to_gray(perturbed) - to_gray(x)).abs(), 5, 2.0), "minmax")
    torch.testing.assert_close(attribution(x, perturbed, config), without, atol=1e-4, rtol=0)


def test_gray_matches_torchvision_and_order_matters() -> None:
    x = images()
    torch.testing.assert_close(to_gray(x), rgb_to_grayscale(x)[:, 0], atol=1e-6, rtol=0)
    delta = torch.zeros_like(x)
    delta[:, 0], delta[:, 1] = 0.1, -0.1  # gray-then-subtract nearly cancels; subtract-then-gray does not
    assert not torch.allclose((to_gray(x + delta) - to_gray(x)).abs(), to_gray((delta).abs()), atol=1e-3)


def test_unknown_normalisation_and_oversized_blur_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown normalization"):
        normalize_map(torch.rand(1, 4, 4), "l2")
    with pytest.raises(ValueError, match="too large"):
        blur_map(torch.rand(1, 8, 8), 49, 7.7)
    with pytest.raises(ValueError, match="same shape"):
        attribution(images(size=8), images(size=16))


def test_blur_spreads_the_map() -> None:
    x = images(batch=1)
    perturbed = x.clone()
    perturbed[0, :, 8, 8] += 1.0
    sharp = attribution(x, perturbed, no_blur())
    wide = attribution(x, perturbed, FameConfig(blur_kernel=9, blur_sigma=3.0))
    assert int((sharp > 0.1).sum()) == 1 and int((wide > 0.1).sum()) > 9


# --- losses ------------------------------------------------------------------------------------------


def identity_feature_model() -> tuple[nn.Module, Recorder]:
    after = Recorder()
    return nn.Sequential(nn.Identity(), after).eval(), after


def test_location_loss_is_l1_over_channels_at_its_own_location() -> None:
    model, after = identity_feature_model()
    x = torch.full((2, 4, 2, 2), 100.0)
    x[0, :, 0, 1] = torch.tensor([3.0, -4.0, 0.0, -1.0])
    x[1, :, 1, 0] = torch.tensor([5.0, -2.0, 0.0, 0.0])
    values = location_loss(model, "0", [(0, 1), (1, 0)])(x)
    assert values.tolist() == [8.0, 7.0]
    assert after.calls == 0  # the forward stopped at layer "0"


def test_location_loss_checks_lengths_and_range() -> None:
    model, _ = identity_feature_model()
    x = torch.zeros(2, 4, 2, 2)
    with pytest.raises(ValueError, match="2 samples but 1 locations"):
        location_loss(model, "0", [(0, 0)])(x)
    with pytest.raises(ValueError, match="outside the 2x2"):
        location_loss(model, "0", [(0, 0), (2, 0)])(x)
    assert model[0]._forward_hooks == {}


def test_class_loss_raw_vs_absolute_logit() -> None:
    weight = torch.ones(1, 2, 2)
    x = torch.ones(1, 1, 2, 2)
    negative = LinearLogit(weight, bias=-10.0)  # z = 4 − 10 = −6
    assert class_loss(negative, [0])(x).item() == -6.0
    assert class_loss(negative, [0], absolute=True)(x).item() == 6.0
    raw = optimize(x, class_loss(negative, [0]), no_blur(iterations=1))
    absolute = optimize(x, class_loss(negative, [0], absolute=True), no_blur(iterations=1))
    assert negative(raw).item() < -6.0 < negative(absolute).item()  # opposite directions once z < 0
    with pytest.raises(ValueError, match="class indices"):
        class_loss(negative, [3])(x)


def test_cosine_similarity_with_detached_norms_same_value_different_gradient() -> None:
    a = torch.tensor([[1.0, 2.0, 2.0]], requires_grad=True)
    b = torch.tensor([[2.0, 0.0, 1.0]])
    full = cosine_similarity(a, b)
    detached = cosine_similarity(a, b, detach_norms=True)
    assert full.item() == pytest.approx(4 / (3 * 5**0.5))
    assert detached.item() == pytest.approx(full.item())
    (grad_full,) = torch.autograd.grad(full.sum(), a)
    (grad_detached,) = torch.autograd.grad(detached.sum(), a)
    torch.testing.assert_close(grad_detached, b / (3 * 5**0.5))  # ∂(a·b)/∂a / (‖a‖‖b‖)
    assert not torch.allclose(grad_full, grad_detached)


def test_verification_losses_sum_to_one_and_move_s_the_right_way() -> None:
    model, x, ref = pooled_embedder(), images(batch=2, seed=2), images(batch=2, seed=3)
    reference = model(ref).detach()
    similar, dissimilar = verification_loss(model, reference, "similar"), verification_loss(model, reference, "dissimilar")
    torch.testing.assert_close(similar(x) + dissimilar(x), torch.ones(2))
    config = no_blur(iterations=40)
    assert bool((similar(optimize(x, similar, config)) < similar(x)).all())  # L₊ lowers s
    assert bool((similar(optimize(x, dissimilar, config)) > similar(x)).all())  # L₋ raises s
    with pytest.raises(ValueError, match="mode"):
        verification_loss(model, reference, "opposite")  # type: ignore[arg-type]


# --- task entry points ---------------------------------------------------------------------------------


def cell_of(i: int, j: int, size: int, grid: int) -> tuple[slice, slice]:
    return slice(round(i * size / grid), round((i + 1) * size / grid)), slice(round(j * size / grid), round((j + 1) * size / grid))


def test_one_by_one_network_keeps_each_location_inside_its_cell() -> None:
    model = cell_network()
    x = images(batch=1)
    maps = explain_locations(model, "3", x, config=no_blur(iterations=3), batch_size=5)
    assert maps.shape == (16, 16, 16)
    for k, (i, j) in enumerate(fame.all_locations((4, 4))):
        rows, cols = cell_of(i, j, 16, 4)
        inside = torch.zeros(16, 16, dtype=torch.bool)
        inside[rows, cols] = True
        assert torch.equal(maps[k][~inside], torch.zeros(int((~inside).sum())))
        assert maps[k][inside].max() == pytest.approx(1.0, abs=1e-6)
    # one full forward checks the layer runs once; the 16 × 3 optimisation forwards all stop at the layer
    assert model[4].calls == 1 and model[3]._forward_hooks == {}


def test_seven_by_seven_grid_gives_49_maps_in_row_major_order() -> None:
    model, x = grid7_network(), images(batch=1, size=28)
    config = FameConfig(step_size=ETA, iterations=3, blur_kernel=5, blur_sigma=1.5)
    maps = explain_locations(model, "3", x, config=config, batch_size=16)
    assert maps.shape == (49, 28, 28)
    alone = explain_locations(model, "3", x[0], locations=[(3, 4)], config=config)
    torch.testing.assert_close(maps[3 * 7 + 4], alone[0], atol=1e-6, rtol=0)
    assert not torch.allclose(maps[0], maps[48], atol=1e-3)
    reordered = explain_locations(model, "3", x, locations=[(6, 6), (0, 0)], config=config)
    torch.testing.assert_close(reordered, maps[[48, 0]], atol=1e-6, rtol=0)


def test_explain_locations_runs_the_fewest_balanced_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = grid7_network(), images(batch=1, size=28)
    config = FameConfig(step_size=ETA, iterations=2, blur_kernel=5, blur_sigma=1.5)
    sizes: list[int] = []
    real = fame_explain.optimize

    def counted(batch: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        sizes.append(batch.shape[0])
        return real(batch, *args, **kwargs)

    monkeypatch.setattr(fame_explain, "optimize", counted)
    maps = explain_locations(model, "3", x, config=config, batch_size=8)
    assert sizes == [7] * 7
    alone = explain_locations(model, "3", x, locations=[(6, 6)], config=config, batch_size=1)
    torch.testing.assert_close(maps[48], alone[0], atol=1e-6, rtol=0)


def test_explain_locations_validates_its_inputs() -> None:
    model = grid7_network()
    x = images(batch=1, size=28)
    with pytest.raises(ValueError, match="one image at a time"):
        explain_locations(model, "3", images(batch=2, size=28))
    with pytest.raises(ValueError, match="outside the 7x7"):
        explain_locations(model, "3", x, locations=[(7, 0)], config=no_blur())
    with pytest.raises(ValueError, match="unknown layer '4x'"):
        explain_locations(model, "4x", x)
    with pytest.raises(ValueError, match="training mode"):
        explain_locations(grid7_network().train(), "3", x)
    with pytest.raises(ValueError, match="NaN"):
        explain_locations(model, "3", torch.full((3, 28, 28), float("inf")))
    assert model[3]._forward_hooks == {}


def test_hooks_are_removed_after_an_exception_inside_the_optimiser() -> None:
    model = grid7_network()
    x = images(batch=1, size=28)
    failing = location_loss(model, "3", [(0, 0)])

    def broken(b: torch.Tensor) -> torch.Tensor:
        failing(b)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        optimize(x, broken, no_blur())
    assert model[3]._forward_hooks == {}


def test_explain_class_shapes_targets_and_determinism() -> None:
    model, x = tanh_classifier(), images()
    config = FameConfig(step_size=ETA, iterations=10, blur_kernel=5, blur_sigma=1.5)
    maps = explain_class(model, x, [0, 0], config)
    assert maps.shape == (2, 16, 16) and 0 <= maps.min() and maps.max() <= 1
    other = explain_class(model, x, [3, 3], config)
    assert not torch.allclose(maps, other, atol=1e-3)
    torch.testing.assert_close(explain_class(model, x, [0, 0], config), maps, atol=0, rtol=0)
    torch.testing.assert_close(explain_class(model, x[1], 0, config), maps[1:], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="2 samples but 3 classes"):
        explain_class(model, x, [0, 1, 2], config)
    with pytest.raises(ValueError, match="4 dimensions"):
        explain_class(model, torch.rand(16, 16), [0], config)


def test_explain_class_paper_faithful_stops_on_absolute_logit() -> None:
    weight = torch.ones(1, 4, 4)
    weight[0, 0, 0] = 2.0
    model = LinearLogit(weight, bias=-17.0 + 5e-4).eval()  # |z| = 5e-4 < 1e-3 at the start
    x = torch.ones(1, 1, 4, 4)
    assert torch.equal(explain_class(model, x, [0], no_blur(paper_faithful=True)), torch.zeros(1, 4, 4))
    assert explain_class(model, x, [0], no_blur()).max() == pytest.approx(1.0, abs=1e-6)


def test_explain_verification_both_polarities_roles_and_modes() -> None:
    model, x, ref = pooled_embedder(), images(batch=2, seed=2), images(batch=2, seed=3)
    config = FameConfig(step_size=ETA, iterations=8, blur_kernel=5, blur_sigma=1.5)
    maps = explain_verification(model, x, ref, config)
    assert set(maps) == {"similar", "dissimilar"}
    for value in maps.values():
        assert value.shape == (2, 16, 16) and 0 <= value.min() and value.max() <= 1
    swapped = explain_verification(model, ref, x, config)
    assert not torch.allclose(maps["similar"], swapped["similar"], atol=1e-3)
    only = explain_verification(model, x, ref, config, modes=("dissimilar",))
    assert set(only) == {"dissimilar"}
    torch.testing.assert_close(only["dissimilar"], maps["dissimilar"], atol=0, rtol=0)
    detached = explain_verification(model, x, ref, config, modes=("similar",), detach_norms=True)
    assert not torch.allclose(detached["similar"], maps["similar"], atol=1e-4)
    with pytest.raises(ValueError, match="one reference per image"):
        explain_verification(model, x, images(batch=3), config)
    with pytest.raises(ValueError, match="modes"):
        explain_verification(model, x, ref, config, modes=("both",))


def test_public_names_resolve() -> None:
    for name in fame.__all__:
        assert getattr(fame, name) is not None


# --- sweeps (Figs. 5, 6) ---------------------------------------------------------------------------------


def test_iteration_sweep_snapshots_equal_separate_runs() -> None:
    model, x = tanh_classifier(), images()
    loss = class_loss(model, [0, 1])
    config = FameConfig(step_size=ETA, blur_kernel=5, blur_sigma=1.5, epsilon=1e9)  # the sweep turns early stop off
    maps, perturbed = fame.iteration_sweep(x, loss, [1, 4], config)
    for n in (1, 4):
        alone = optimize(x, loss, config.replace(iterations=n, epsilon=None))
        torch.testing.assert_close(perturbed[n], alone, atol=1e-6, rtol=0)
        torch.testing.assert_close(maps[n], attribution(x, alone, config), atol=1e-5, rtol=0)
    assert not torch.allclose(maps[1], maps[4], atol=1e-3)  # more iterations change the map


def test_step_size_and_blur_sweeps() -> None:
    model, x = tanh_classifier(), images()
    maps, perturbed = fame.step_size_sweep(x, class_loss(model, [0, 1]), [0.01, 0.04], no_blur(iterations=3))
    small, large = ((perturbed[eta] - x).abs().mean() for eta in (0.01, 0.04))
    assert large > small  # a larger η gives a larger perturbation
    assert set(maps) == {0.01, 0.04}
    blurred = fame.blur_sweep(x, perturbed[0.01], [3, 9])
    assert fame.sweep_sigma(49) == pytest.approx(7.69, abs=0.01) and fame.sweep_sigma(1) == 0.5
    area = {k: float((m >= 0.5).float().mean()) for k, m in blurred.items()}
    assert area[9] > area[3]  # a wider blur spreads the map


# --- shipped network ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_shipped_classifier_location_and_class_maps() -> None:
    from fame_utils.models import load_model

    spec = load_model("efficientnet_lite0", device="cpu")
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1
    config = FameConfig(iterations=2)
    assert fame.feature_grid(spec.module, spec.target_layer, x) == (7, 7)
    maps = explain_locations(spec.module, spec.target_layer, x, [(0, 0), (6, 6)], config, batch_size=2)
    assert maps.shape == (2, 224, 224) and maps.min() == 0 and maps.max() == pytest.approx(1, abs=1e-6)
    assert not torch.allclose(maps[0], maps[1], atol=1e-2)
    module = resolve_layer(spec.module, spec.target_layer)
    assert module._forward_hooks == {}
    loss = class_loss(spec.module, [3])
    assert loss(optimize(x, loss, config)) < loss(x)


def test_class_objective_is_the_raw_logit_by_default_and_its_magnitude_with_epsilon_when_paper_faithful() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
    x = torch.full((1, 1, 2, 2), -0.5)  # z₀ = −2
    loss, settings = class_objective(model, [0], FameConfig(iterations=3))
    with torch.no_grad():
        assert float(loss(x)[0]) == -2.0
    assert settings.epsilon is None and settings.iterations == 3
    loss, settings = class_objective(model, [0], FameConfig(iterations=3, paper_faithful=True))
    with torch.no_grad():
        assert float(loss(x)[0]) == 2.0
    assert settings.epsilon == 1e-3 and settings.paper_faithful
    _, settings = class_objective(model, [0], FameConfig(epsilon=0.5, paper_faithful=True))
    assert settings.epsilon == 0.5
