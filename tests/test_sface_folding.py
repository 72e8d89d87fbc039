"""SFace with its BatchNorm folded into the neighbouring layers: the same embeddings, fewer operations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fame_utils.baselines.gradient import fggb
from fame_utils.baselines.perturbation import corrrise, corrrise_masks
from fame_utils.models import load_model
from fame_utils.models.sface import SFace, fold_batchnorm


@pytest.fixture(scope="module")
def sface() -> nn.Module:
    return load_model("sface", device="cpu").module


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

    class Unfolded(nn.Module):  # the same network, not recognised as SFace, so nothing is folded
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return sface(x)

    reference = corrrise(Unfolded().eval(), probe, gallery, masks=masks)
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

    class Unfolded(nn.Module):  # the same network, not recognised as SFace, so nothing is folded
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return sface(x)

    maps = fggb(sface, probe, gallery, 0.3)
    reference = fggb(Unfolded().eval(), probe, gallery, 0.3)
    for key in ("similar", "dissimilar"):
        torch.testing.assert_close(maps[key], reference[key], atol=2e-3, rtol=0)
