"""Per-sample early stopping: batched FAME runs equal one-at-a-time runs when samples stop at different steps.

Each case picks ε from the free loss curves so that exactly one sample stops early, checks that premise,
then checks the maps and which samples each loss evaluation saw.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fame_utils.fame import (
    FameConfig,
    OptimizationTrace,
    SampleLoss,
    class_loss,
    explain_class,
    explain_locations,
    explain_verification,
    location_loss,
    optimize,
    verification_loss,
)
from tiny_models import LinearLogit, grid7_network, pooled_embedder, tanh_classifier

ETA = 0.01


def images(batch: int, size: int, seed: int) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def config(**changes: object) -> FameConfig:
    return FameConfig(**{"step_size": ETA, "iterations": 12, "blur_kernel": 5, "blur_sigma": 1.5, **changes})


def recording(loss: SampleLoss, seen: list[list[int]]) -> SampleLoss:
    """The same loss, noting which samples each evaluation saw."""

    def score(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        seen.append(index.tolist())
        return loss(x, index)

    return SampleLoss(score, loss.samples, loss.what)


def free_curves(x: torch.Tensor, loss: SampleLoss, iterations: int) -> torch.Tensor:
    """(iterations + 1, B) loss curves without early stopping."""
    trace = OptimizationTrace()
    optimize(x, loss, config(iterations=iterations), trace=trace)
    return trace.losses


def epsilon_stopping_first(curves: torch.Tensor, sample: int, step: int) -> float:
    """ε between steps ``step`` − 1 and ``step`` of ``sample``'s curve: it stops after ``step`` steps."""
    return float(curves[step - 1, sample] + curves[step, sample]) / 2


def assert_only_first_stops_early(loss: SampleLoss, x: torch.Tensor, run: FameConfig, stop: int) -> None:
    seen: list[list[int]] = []
    optimize(x, recording(loss, seen), run)
    everyone = list(range(x.shape[0]))
    assert seen[: stop + 1] == [everyone] * (stop + 1)
    assert seen[stop + 1 :] == [everyone[1:]] * (run.iterations - stop - 1)


def assert_same_maps(batched: torch.Tensor, alone: torch.Tensor) -> None:
    """Equal up to float rounding: CPU kernels sum in a different order for different batch sizes."""
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)


def test_explain_class_two_images_two_classes_equals_one_at_a_time() -> None:
    model, x, classes = tanh_classifier(), images(2, 16, seed=1), [0, 2]
    curves = free_curves(x, class_loss(model, classes), 12)
    epsilon = epsilon_stopping_first(curves, sample=0, step=4)
    assert bool((curves[:, 1] >= epsilon).all())  # the precondition: sample 1 never stops
    run = config(epsilon=epsilon)
    batched = explain_class(model, x, classes, run)
    alone = torch.cat([explain_class(model, x[i : i + 1], [c], run) for i, c in enumerate(classes)])
    assert_same_maps(batched, alone)
    assert_only_first_stops_early(class_loss(model, classes), x, run, stop=4)


def test_explain_locations_several_locations_equal_one_at_a_time() -> None:
    model, x = grid7_network(), images(1, 28, seed=4)
    locations = [(1, 1), (5, 2), (3, 6)]
    loss = location_loss(model, "3", locations)
    batch = x.expand(3, -1, -1, -1)
    curves = free_curves(batch, loss, 12)
    epsilon = epsilon_stopping_first(curves, sample=0, step=3)
    assert bool((curves[:4, 1:] >= epsilon).all())
    run = config(epsilon=epsilon)
    batched = explain_locations(model, "3", x, locations, run, batch_size=3)
    assert_same_maps(batched, explain_locations(model, "3", x, locations, run, batch_size=1))
    seen: list[list[int]] = []
    optimize(batch, recording(loss, seen), run)
    assert seen[3] == [0, 1, 2] and 0 not in seen[4]


@pytest.mark.parametrize("mode", ["similar", "dissimilar"])
def test_explain_verification_one_reference_per_pair_equals_one_at_a_time(mode: str) -> None:
    order = [0, 1] if mode == "similar" else [1, 0]  # the pair that reaches ε first goes first
    model, x, reference = pooled_embedder(), images(2, 16, seed=2)[order], images(2, 16, seed=3)[order]
    with torch.no_grad():
        embeddings = model(reference)
    loss = verification_loss(model, embeddings, mode)
    curves = free_curves(x, loss, 12)
    epsilon = epsilon_stopping_first(curves, sample=0, step=2)
    assert bool((curves[:3, 1] >= epsilon).all())
    run = config(epsilon=epsilon)
    batched = explain_verification(model, x, reference, run, modes=(mode,))[mode]
    alone = torch.cat([explain_verification(model, x[i], reference[i], run, modes=(mode,))[mode] for i in range(2)])
    assert_same_maps(batched, alone)
    seen: list[list[int]] = []
    optimize(x, recording(loss, seen), run)
    assert seen[2] == [0, 1] and seen[3][0] != 0


def dead_relu_loss() -> tuple[SampleLoss, torch.Tensor]:
    """relu(w·x + c_b): c₀ = −100 keeps sample 0 dead (gradient exactly 0), c₁ = 0 leaves sample 1 moving."""
    weight = torch.zeros(1, 4, 4)
    weight[0, :2] = 1.0
    model = LinearLogit(weight)
    offsets = torch.tensor([-100.0, 0.0])

    def score(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return torch.relu(model(x)[:, 0] + offsets[index])

    return SampleLoss(score, 2, "offsets"), torch.full((2, 1, 4, 4), 0.5)


def test_zero_gradient_sample_stops_and_the_rest_go_on() -> None:
    loss, x = dead_relu_loss()
    seen: list[list[int]] = []
    trace = OptimizationTrace()
    perturbed = optimize(x, recording(loss, seen), config(iterations=5), trace=trace)
    assert seen == [[0, 1]] + [[1]] * 5  # 5 gradient evaluations + the trace's final loss
    assert torch.equal(perturbed[0], x[0])
    torch.testing.assert_close(perturbed[1:], optimize(x[1:], lambda b: torch.relu(b[:, 0, :2].sum(dim=(1, 2))), config(iterations=5)), atol=0, rtol=0)
    assert trace.losses.shape == (6, 2) and bool((trace.losses[:, 0] == 0).all())
    # sample 1's loss 4 falls by η·8 per step
    torch.testing.assert_close(trace.losses[:, 1], 4.0 - 8 * ETA * torch.arange(6.0), atol=1e-5, rtol=0)


def test_zero_gradient_sample_outside_the_clamp_is_clamped_once_then_frozen() -> None:
    loss, x = dead_relu_loss()
    x[0, 0, 3, 3] = 2.0
    seen: list[list[int]] = []
    perturbed = optimize(x, recording(loss, seen), config(iterations=4, clamp=(0.0, 1.0)))
    assert seen[:2] == [[0, 1], [0, 1]] and seen[2:] == [[1]] * 2
    assert perturbed[0, 0, 3, 3] == 1.0


def test_all_samples_with_zero_gradient_end_the_run() -> None:
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    trace = OptimizationTrace()
    perturbed = optimize(x, lambda b: (0 * b).sum(dim=(1, 2, 3)), config(iterations=50), trace=trace)
    assert torch.equal(perturbed, x) and trace.steps == 1 and trace.losses.shape == (2, 3)


def test_snapshots_after_an_early_end_hold_the_frozen_input() -> None:
    # A loss that reaches 0 (ReLU) freezes its sample by the zero-gradient rule; steps asked for after the
    # end of the run show the frozen x̄, the state a longer run would have, not a missing entry.
    x = torch.full((1, 3, 4, 4), 0.05)
    trace = OptimizationTrace(snapshot_steps=(0, 3, 10, 40, 41))
    perturbed = optimize(x, lambda b: torch.relu(b[:, 0].sum(dim=(1, 2))), config(iterations=40), trace=trace)
    # the channel-0 sum 16 · 0.05 = 0.8 falls by 16 η = 0.16 per step to 0 after 5 steps; the 6th finds a zero gradient
    assert trace.steps == 6 and sorted(trace.snapshots) == [0, 3, 10, 40]
    torch.testing.assert_close(trace.snapshots[3][0, 0], torch.full((4, 4), 0.05 - 3 * ETA), atol=1e-6, rtol=0)
    assert torch.equal(trace.snapshots[10], perturbed) and torch.equal(trace.snapshots[40], perturbed)


def test_paper_faithful_batch_mean_counts_frozen_samples() -> None:
    loss, x = dead_relu_loss()
    # the mean is (0 + L₁)/2: with ε = 1.9 the batch stops once L₁ < 3.8, i.e. after 3 steps (4 − 0.08·n)
    perturbed = optimize(x, loss, config(iterations=20, epsilon=1.9, paper_faithful=True))
    assert (perturbed[1] - x[1]).abs().max().item() == pytest.approx(3 * ETA, abs=1e-7)


def test_plain_callable_sees_the_whole_batch() -> None:
    model, x = tanh_classifier(), images(2, 16, seed=1)
    sizes: list[int] = []
    targets = torch.tensor([0, 2])

    def loss(b: torch.Tensor) -> torch.Tensor:
        sizes.append(b.shape[0])
        return model(b)[torch.arange(2), targets]

    curves = free_curves(x, class_loss(model, [0, 2]), 12)
    run = config(epsilon=epsilon_stopping_first(curves, sample=0, step=4))
    assert_same_maps(optimize(x, loss, run), optimize(x, class_loss(model, [0, 2]), run))
    assert set(sizes) == {2}


def test_sample_loss_checks_the_batch_without_index() -> None:
    with pytest.raises(ValueError, match="batch has 1 samples but 2 classes"):
        class_loss(tanh_classifier(), [0, 1])(images(1, 16, seed=0))


# --- speed settings: layout and opt-in precision ------------------------------------------------------


def test_channels_last_changes_only_rounding() -> None:
    model, x = tanh_classifier(), images(2, 16, seed=1)
    run = config(epsilon=0.18)
    nchw = optimize(x, class_loss(model, [0, 2]), run.replace(memory_format="nchw"))
    channels_last = optimize(x, class_loss(model, [0, 2]), run)
    assert channels_last.is_contiguous()
    torch.testing.assert_close(channels_last, nchw, atol=1e-6, rtol=0)


def test_bf16_autocast_keeps_the_lots_update_in_fp32() -> None:
    weight = torch.randn(3, 6, 6, generator=torch.Generator().manual_seed(3))
    model = nn.Sequential(nn.Flatten(), nn.Linear(108, 1, bias=False)).eval()
    model[1].weight.data = weight.reshape(1, 108)
    x, steps = images(1, 6, seed=0), 4
    perturbed = optimize(x, class_loss(model, [0]), config(iterations=steps, precision="bf16"))
    assert perturbed.dtype == torch.float32
    # under autocast the linear layer runs in bf16, so the gradient is w rounded to bf16: every step still moves the max by exactly η
    assert (perturbed - x).abs().max().item() == pytest.approx(steps * ETA, abs=1e-6)
    bf16_weight = weight.to(torch.bfloat16).float()
    torch.testing.assert_close(perturbed - x, -steps * ETA * bf16_weight[None] / bf16_weight.abs().max(), atol=1e-6, rtol=0)


def test_bad_speed_settings_are_named() -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        FameConfig(precision="int8")
    with pytest.raises(ValueError, match="memory_format must be one of"):
        FameConfig(memory_format="nhwc")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        optimize(images(1, 8, seed=0), lambda b: b.sum(dim=(1, 2, 3)), config(precision="fp16"))


@pytest.mark.parametrize("single_reference", [False, True])
def test_explain_verification_maps_do_not_depend_on_its_batch_size(single_reference: bool) -> None:
    model, x = pooled_embedder(), images(5, 16, seed=4)
    reference = images(1, 16, seed=5) if single_reference else images(5, 16, seed=5)
    run = config(epsilon=None)
    whole = explain_verification(model, x, reference, run, batch_size=5)
    for size in (1, 2):
        chunked = explain_verification(model, x, reference, run, batch_size=size)
        for mode in ("similar", "dissimilar"):  # rounding differs with the batch and drifts over 12 steps: 1e-4
            torch.testing.assert_close(chunked[mode], whole[mode], atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="batch_size"):
        explain_verification(model, x, reference, run, batch_size=0)


def test_paper_faithful_batch_mean_stop_sees_the_whole_batch_whatever_the_batch_size() -> None:
    # Under the batch-mean rule a sample's map depends on its batch mates, so explain_verification must not split it.
    model, x, reference = pooled_embedder(), images(4, 16, seed=6), images(4, 16, seed=7)
    with torch.no_grad():
        loss = verification_loss(model, model(reference), "similar")
    curves = free_curves(x, loss, 12)
    epsilon = float(curves[3].mean() + curves[4].mean()) / 2  # the batch mean crosses ε after 4 steps
    run = config(epsilon=epsilon, paper_faithful=True)
    whole = explain_verification(model, x, reference, run, modes=("similar",), batch_size=4)["similar"]
    asked_in_ones = explain_verification(model, x, reference, run, modes=("similar",), batch_size=1)["similar"]
    assert torch.equal(asked_in_ones, whole)
    one_by_one = torch.cat([explain_verification(model, x[i], reference[i], run, modes=("similar",))["similar"] for i in range(4)])
    assert float((one_by_one - whole).abs().max()) > 1e-3, "ε must make the batch mean matter, or the test proves nothing"
