"""Verification baselines: CAM-cosine, Grad-CAM-EW-cosine, CorrRISE, FGGB, and running them by name."""

from __future__ import annotations

import pytest
import torch

from fame_utils.baselines import (
    VERIFICATION_METHODS,
    corrrise,
    corrrise_masks,
    corrrise_patch_origins,
    explain_pairs,
    fggb,
    fggb_gradients,
    gradcam_ew_verification,
    gradcam_verification,
)
from fame_utils.fame import FameConfig, optimize, verification_loss
from tiny_models import RegionEmbedding, cam_embedder


def pair_images(batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, 32, 32, generator=generator), torch.rand(batch, 3, 32, 32, generator=generator)


@pytest.mark.parametrize("method", [gradcam_verification, gradcam_ew_verification])
def test_cam_cosine_and_dot_targets_give_identical_maps(method):
    model = cam_embedder()
    images, references = pair_images()
    cosine = method(model, "body", images, references, target="cosine")
    dot = method(model, "body", images, references, target="dot")
    assert cosine["dissimilar"] is None
    assert cosine["similar"].shape == (2, 32, 32)
    assert cosine["similar"].min() >= 0 and cosine["similar"].max() <= 1
    assert cosine["similar"].amax(dim=(1, 2)).gt(0.99).all()
    torch.testing.assert_close(cosine["similar"], dot["similar"], atol=1e-5, rtol=0)


def test_cam_accepts_reference_embeddings_and_checks_batch_length():
    model = cam_embedder()
    images, references = pair_images()
    with torch.no_grad():
        embeddings = model(references)
    from_images = gradcam_verification(model, "body", images, references)["similar"]
    from_embeddings = gradcam_verification(model, "body", images, embeddings)["similar"]
    torch.testing.assert_close(from_images, from_embeddings)
    with pytest.raises(ValueError, match="same batch size"):
        gradcam_verification(model, "body", images, references[:1])
    with pytest.raises(ValueError, match="cosine' or 'dot"):
        gradcam_verification(model, "body", images, references, target="l2")


def test_corrrise_patches_are_whole_squares_inside_the_image():
    patch, size = 7, 20
    origins = corrrise_patch_origins(200, size, patch_size=patch, n_patches=3, seed=3)
    assert origins.shape == (200, 3, 2)
    assert origins.min() >= 0 and origins.max() <= size - patch
    single = corrrise_masks(200, size, patch_size=patch, n_patches=1, seed=3)
    assert torch.equal((single == 0).sum(dim=(1, 2)), torch.full((200,), patch * patch))
    masks = corrrise_masks(200, size, patch_size=patch, n_patches=3, seed=3)
    for mask, corners in zip(masks, origins):
        painted = torch.zeros(3, size, size, dtype=torch.bool)
        for k, (row, col) in enumerate(corners.tolist()):
            painted[k, row : row + patch, col : col + patch] = True
        assert painted.sum(dim=(1, 2)).tolist() == [patch * patch] * 3  # 3·p² zeros before overlap is counted
        assert torch.equal(mask == 0, painted.any(dim=0))


def test_corrrise_default_patch_scales_with_the_input_size_and_masks_are_seeded():
    for size, patch in ((112, 30), (150, 40)):
        single = corrrise_masks(4, size, n_patches=1, seed=0)
        assert (single == 0).sum(dim=(1, 2)).tolist() == [patch * patch] * 4
    assert torch.equal(corrrise_masks(20, 32, seed=5), corrrise_masks(20, 32, seed=5))
    assert not torch.equal(corrrise_masks(20, 32, seed=5), corrrise_masks(20, 32, seed=6))


def test_corrrise_finds_the_region_that_carries_the_similarity():
    images = torch.ones(1, 3, 32, 32)
    reference = torch.tensor([[1.0, 0.0]])
    maps = corrrise(RegionEmbedding().eval(), images, reference, n_masks=300, seed=0, batch_size=64)
    similar, dissimilar = maps["similar"][0], maps["dissimilar"][0]
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[8:16, 8:16] = True
    assert similar[inside].mean() > 3 * similar[~inside].mean()
    assert inside.flatten()[similar.argmax()]
    assert torch.all(similar * dissimilar == 0)  # polarities are disjoint
    assert torch.isfinite(similar).all() and torch.isfinite(dissimilar).all()


def test_corrrise_gives_zero_where_a_pixel_is_never_occluded():
    masks = corrrise_masks(100, 32, patch_size=6, seed=1)
    masks[:, 0, 0] = 1.0
    maps = corrrise(RegionEmbedding().eval(), torch.ones(1, 3, 32, 32), torch.tensor([[1.0, 0.0]]), masks=masks)
    assert maps["similar"][0, 0, 0] == 0 and maps["dissimilar"][0, 0, 0] == 0


def test_corrrise_is_seed_reproducible():
    model = cam_embedder()
    images, references = pair_images(1)
    first = corrrise(model, images, references, n_masks=40, seed=2)
    second = corrrise(model, images, references, n_masks=40, seed=2)
    torch.testing.assert_close(first["similar"], second["similar"], atol=0, rtol=0)


def test_fggb_jacobian_of_a_batch_equals_autograd_jacobian_of_each_face():
    model = cam_embedder()
    images, _ = pair_images(3)
    jacobian = fggb_gradients(model, images)
    assert jacobian.shape == (3, 16, 3, 32, 32)
    for index, image in enumerate(images):
        expected = torch.autograd.functional.jacobian(lambda x: torch.nn.functional.normalize(model(x[None])[0], dim=0, eps=1e-8), image)
        torch.testing.assert_close(jacobian[index], expected, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_fggb_maps_do_not_depend_on_how_many_faces_share_a_backward_pass(batch_size):
    model = cam_embedder()
    images, references = pair_images(5, seed=3)
    one_by_one = [fggb(model, images[i:i + 1], references[i:i + 1], threshold=0.2, blur_kernel=5, blur_sigma=1.0) for i in range(5)]
    batched = fggb(model, images, references, threshold=0.2, blur_kernel=5, blur_sigma=1.0, batch_size=batch_size)
    for key in ("similar", "dissimilar"):
        torch.testing.assert_close(batched[key], torch.cat([maps[key] for maps in one_by_one]), atol=1e-6, rtol=0)
    assert batched["similar"].amax(dim=(1, 2)).eq(1).all()


def test_fggb_rejects_an_empty_backward_batch_and_a_model_in_train_mode():
    model = cam_embedder()
    images, references = pair_images()
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        fggb(model, images, references, threshold=0.2, batch_size=0)
    with pytest.raises(ValueError, match="eval"):
        fggb_gradients(model.train(), images)


def test_fggb_differentiates_through_the_l2_normalisation():
    # ‖φ̂‖ is constant (≈ 1), so Σ_i φ̂_i ∂φ̂_i/∂x = 0; without the normalisation this would not vanish.
    model = cam_embedder()
    image = pair_images(1)[0][0]
    jacobian = fggb_gradients(model, image[None])[0]
    with torch.no_grad():
        embedding = model(image[None])[0]
    normalized = embedding / embedding.norm()
    radial = torch.einsum("d,dchw->chw", normalized, jacobian)
    assert radial.abs().max() < 1e-5 * jacobian.abs().max()


def test_fggb_threshold_spread_keeps_similar_map_while_per_dimension_empties_it():
    model = cam_embedder()
    image = pair_images(1)[0]
    reference = image + 0.01 * torch.randn(image.shape, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        phi_x, phi_r = (torch.nn.functional.normalize(model(x), dim=1)[0] for x in (image, reference))
    similarity = float(phi_x @ phi_r)
    threshold = 0.9
    assert similarity > threshold > float((phi_x * phi_r).max())  # spread: Σ w_i > 0; per-dimension: every w_i < 0
    spread = fggb(model, image, reference, threshold, blur_kernel=5, blur_sigma=1.0)
    per_dimension = fggb(model, image, reference, threshold, per_dimension=True, blur_kernel=5, blur_sigma=1.0)
    assert spread["similar"].max() == 1.0
    assert per_dimension["similar"].max() == 0.0
    assert per_dimension["dissimilar"].max() == 1.0
    for maps in (spread, per_dimension):
        assert maps["similar"].shape == maps["dissimilar"].shape == (1, 32, 32)


@pytest.mark.parametrize("mode, direction", [("similar", -1), ("dissimilar", 1)])
def test_fame_similar_loss_lowers_and_dissimilar_loss_raises_the_similarity(mode, direction):
    model = cam_embedder()
    images, references = pair_images()
    with torch.no_grad():
        reference_embeddings = model(references)
        before = torch.nn.functional.cosine_similarity(model(images), reference_embeddings)
    perturbed = optimize(images, verification_loss(model, reference_embeddings, mode), FameConfig(iterations=40, step_size=2 / 255))
    with torch.no_grad():
        after = torch.nn.functional.cosine_similarity(model(perturbed), reference_embeddings)
    assert torch.all(direction * (after - before) > 0)


def test_explain_pairs_runs_every_method_on_both_sides():
    model = cam_embedder()
    gallery, probes = pair_images()
    result = explain_pairs(model, "body", gallery, probes, threshold=0.2, fame_config=FameConfig(iterations=5, blur_kernel=5, blur_sigma=1.0), n_masks=20)
    assert tuple(result) == VERIFICATION_METHODS
    for name, sides in result.items():
        for side in ("probe", "gallery"):
            similar, dissimilar = sides[side]["similar"], sides[side]["dissimilar"]
            assert similar.shape == (2, 32, 32) and 0 <= similar.min() and similar.max() <= 1
            assert (dissimilar is None) == name.startswith("Grad-CAM")
    assert not torch.equal(result["FAME"]["probe"]["similar"], result["FAME"]["gallery"]["similar"])
    with pytest.raises(ValueError, match="unknown methods"):
        explain_pairs(model, "body", gallery, probes, 0.2, methods=("RISE",))
