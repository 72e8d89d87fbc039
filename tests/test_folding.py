"""Inference copies with BatchNorm (and dlib's affine layers) folded into the convolutions: the same function, fewer operations."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from fame_utils.baselines.gradient import fggb
from fame_utils.baselines.perturbation import CORRRISE_BATCH, corrrise, corrrise_masks
from fame_utils.fame import FameConfig, explain_class, explain_locations
from fame_utils.locality import cell_gradients
from fame_utils.models import load_model
from fame_utils.models.dlib_resnet import ChannelAffine, DlibResNet
from fame_utils.models.folding import InputGradientPReLU, fold_batchnorm, foldable, inference_copy, matching_layer
from fame_utils.models.sface import SFace


@pytest.fixture(scope="module")
def sface() -> nn.Module:
    return load_model("sface", device="cpu").module


@pytest.fixture(scope="module")
def lite0() -> nn.Module:
    return load_model("efficientnet_lite0", device="cpu").module


class Unfolded(nn.Module):
    """The same network under a type :func:`foldable` does not know, so nothing is folded."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)


def test_folded_sface_gives_the_same_embeddings(sface: nn.Module) -> None:
    x = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    folded = fold_batchnorm(sface)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in sface.modules())  # the original is untouched
    with torch.no_grad():
        torch.testing.assert_close(folded(x), sface(x), atol=2e-5, rtol=0)


def test_seeded_random_sface_folds_exactly_too() -> None:
    torch.manual_seed(0)
    model = SFace()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.5, 0.5)
    model.eval()
    x = torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model(x)
        torch.testing.assert_close(fold_batchnorm(model)(x), reference, atol=1e-5 * float(reference.abs().max()), rtol=0)


def test_folding_a_training_model_is_refused() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(SFace().train())


def test_corrrise_on_folded_sface_matches_the_unfolded_forward(sface: nn.Module) -> None:
    probe = torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(2))
    gallery = torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(3))
    masks = corrrise_masks(20, 112, seed=0)
    maps = corrrise(sface, probe, gallery, masks=masks)
    reference = corrrise(Unfolded(sface).eval(), probe, gallery, masks=masks)
    for key in ("similar", "dissimilar"):
        torch.testing.assert_close(maps[key], reference[key], atol=1e-4, rtol=0)


def test_folded_sface_is_in_eval_mode_and_has_the_same_input_gradients(sface: nn.Module) -> None:
    folded = fold_batchnorm(sface)
    assert not any(module.training for module in folded.modules())
    x = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(4))
    gradients = []
    for model in (sface, folded):
        inputs = x.clone().requires_grad_(True)
        gradients.append(torch.autograd.grad(model(inputs)[:, 3].sum(), inputs)[0])
    # Pre-activations within float rounding of a PReLU kink may take the other slope, so a few pixels differ more than
    # the embeddings do; as a whole the gradients agree to 0.2 % (measured; faces 0.08 %).
    assert float((gradients[1] - gradients[0]).norm() / gradients[0].norm()) < 1e-2


def test_fggb_on_folded_sface_matches_the_unfolded_network(sface: nn.Module) -> None:
    probe = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(5))
    gallery = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(6))
    maps = fggb(sface, probe, gallery, 0.3)
    reference = fggb(Unfolded(sface).eval(), probe, gallery, 0.3)
    for key in ("similar", "dissimilar"):
        torch.testing.assert_close(maps[key], reference[key], atol=2e-3, rtol=0)


def _batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_folded_lite0_gives_the_same_logits_without_batchnorm_or_symmetric_pads(lite0: nn.Module) -> None:
    folded = fold_batchnorm(lite0)
    pads = [m.padding for m in lite0.modules() if isinstance(m, nn.ZeroPad2d)]
    kept = [m.padding for m in folded.modules() if isinstance(m, nn.ZeroPad2d)]
    assert _batchnorms(lite0) == 49 and _batchnorms(folded) == 0  # stem + 15 × 3 + the first block's 2 + head
    assert kept == [p for p in pads if p[0] != p[1]] and len(kept) == 5  # stem and the four stride-2 depthwise convs
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        reference = lite0(x)
        torch.testing.assert_close(folded(x), reference, atol=1e-5 * float(reference.abs().max()), rtol=0)


def test_seeded_random_dlib_resnet_folds_its_affine_layers_exactly() -> None:
    torch.manual_seed(1)
    model = DlibResNet()
    for module in model.modules():
        if isinstance(module, ChannelAffine):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
    model.eval()
    folded = fold_batchnorm(model)
    assert sum(isinstance(m, ChannelAffine) for m in folded.modules()) == 0
    x = torch.rand(2, 3, 150, 150, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        reference = model(x)
        torch.testing.assert_close(folded(x), reference, atol=1e-5 * float(reference.abs().max()), rtol=0)


def test_unknown_networks_are_refused_by_fold_and_passed_through_by_inference_copy(sface: nn.Module) -> None:
    other = Unfolded(sface).eval()
    assert not foldable(other) and inference_copy(other) is other
    with pytest.raises(ValueError, match="not Unfolded"):
        fold_batchnorm(other)


def test_inference_copy_is_cached_and_refolded_when_the_weights_change() -> None:
    torch.manual_seed(2)
    model = SFace().eval()
    first = inference_copy(model)
    assert inference_copy(model) is first
    x = torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        model.features.conv_1.bn.weight.mul_(3.0)
        second = inference_copy(model)
        assert second is not first
        torch.testing.assert_close(second(x), model(x), atol=1e-4, rtol=0)
    assert inference_copy(model.train()) is model  # training mode: BatchNorm uses batch statistics, nothing is folded
    model.eval().features.conv_2_dw.bn.train()
    assert inference_copy(model) is model  # one module in training mode is enough
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(model)


def test_hooks_on_the_original_do_not_fire_on_the_copy(lite0: nn.Module) -> None:
    calls: list[int] = []
    handle = lite0.head.register_forward_hook(lambda module, args, output: calls.append(1))
    try:
        folded = fold_batchnorm(lite0)
        with torch.no_grad():
            folded(torch.zeros(1, 3, 224, 224))
        assert calls == [] and len(lite0.head._forward_hooks) == 1
    finally:
        handle.remove()


def test_matching_layer_finds_the_same_name_in_the_copy(lite0: nn.Module) -> None:
    folded = inference_copy(lite0)
    assert matching_layer(lite0, folded, lite0.stages[3]) is folded.stages[3]
    assert isinstance(matching_layer(lite0, folded, lite0.head[1]), nn.Identity)  # the folded BatchNorm's place
    assert matching_layer(lite0, folded, "stages.3") == "stages.3"
    with pytest.raises(ValueError, match="not a module of the EfficientNetLite"):
        matching_layer(lite0, folded, nn.ReLU())


def test_location_maps_are_the_same_for_a_layer_given_as_module_or_name(lite0: nn.Module) -> None:
    image = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(10)) * 2 - 1
    config = FameConfig(iterations=3)
    by_module = explain_locations(lite0, lite0.stages[2], image, [(3, 4)], config)
    by_name = explain_locations(lite0, "stages.2", image, [(3, 4)], config)
    torch.testing.assert_close(by_module, by_name, atol=0, rtol=0)


def test_fame_class_maps_on_the_folded_lite0_rank_like_the_unfolded_network(lite0: nn.Module) -> None:
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(11)) * 2 - 1
    config = FameConfig(iterations=5)
    folded_maps = explain_class(lite0, images, [1, 2], config)
    reference = explain_class(Unfolded(lite0).eval(), images, [1, 2], config)
    for a, b in zip(folded_maps, reference):
        assert spearmanr(a.flatten().numpy(), b.flatten().numpy()).statistic > 0.99


def test_cell_gradients_on_the_folded_lite0_match_the_network_as_loaded(lite0: nn.Module) -> None:
    image = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(12)) * 2 - 1
    cells = [(0, 0), (3, 3), (6, 2)]
    folded = cell_gradients(lite0, "stages.4", image, cells)
    loaded = cell_gradients(Unfolded(lite0).eval(), "network.stages.4", image, cells)
    assert float((folded - loaded).norm() / loaded.norm()) < 1e-2  # kinks within rounding take the other slope
    assert not any(module._forward_hooks for module in inference_copy(lite0).modules())


def test_input_gradient_prelu_gives_bitwise_the_prelu_outputs_and_input_gradients() -> None:
    prelu = nn.PReLU(6)
    nn.init.uniform_(prelu.weight, -0.5, 0.5)
    fast = InputGradientPReLU(prelu)
    x = torch.randn(3, 6, 9, 9, generator=torch.Generator().manual_seed(13)).contiguous(memory_format=torch.channels_last)
    x[:, :, 0] = 0.0  # the kink itself: PReLU takes the negative slope there
    upstream = torch.randn(3, 6, 9, 9, generator=torch.Generator().manual_seed(14))
    gradients = []
    for layer in (prelu, fast):
        leaf = x.clone().requires_grad_(True)
        out = layer(leaf)
        gradients.append((out.detach(), torch.autograd.grad(out, leaf, upstream)[0]))
    assert torch.equal(gradients[0][0], gradients[1][0]) and torch.equal(gradients[0][1], gradients[1][1])
    with torch.no_grad():
        assert torch.equal(fast(x), prelu(x))
    assert fast.weight is prelu.weight


def test_folded_sface_uses_the_input_gradient_prelu_and_works_under_bf16(sface: nn.Module) -> None:
    folded = inference_copy(sface)
    assert sum(isinstance(m, InputGradientPReLU) for m in folded.modules()) == 27
    assert not any(type(m) is nn.PReLU for m in folded.modules())
    x = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(15)).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (gradient,) = torch.autograd.grad(folded(x).float().pow(2).sum(), x)
    assert gradient.dtype == torch.float32 and bool(torch.isfinite(gradient).all()) and float(gradient.abs().max()) > 0


def test_corrrise_on_dlib_runs_balanced_batches_of_its_measured_size() -> None:
    torch.manual_seed(3)
    model = DlibResNet().eval()
    probe = torch.rand(1, 3, 150, 150, generator=torch.Generator().manual_seed(16))
    reference = torch.rand(1, 128, generator=torch.Generator().manual_seed(17))
    masks = corrrise_masks(40, 150, seed=0)
    sizes: list[int] = []
    handle = inference_copy(model).register_forward_pre_hook(lambda _module, args: sizes.append(args[0].shape[0]))
    try:
        default = corrrise(model, probe, reference, masks=masks)
    finally:
        handle.remove()
    assert CORRRISE_BATCH[DlibResNet] == 16 and sizes == [13, 13, 14]  # 40 masks: three balanced chunks of at most 16
    one_by_one = corrrise(model, probe, reference, masks=masks, batch_size=1)
    for key in ("similar", "dissimilar"):
        torch.testing.assert_close(default[key], one_by_one[key], atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="most >= 1"):
        corrrise(model, probe, reference, masks=masks, batch_size=0)
