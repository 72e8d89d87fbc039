"""Rival attribution methods: CAMs for classifiers (grad-cam package), sanity maps, and verification baselines."""

from fame_utils.baselines.cams import (
    CAM_METHODS,
    EmptyMapWarning,
    cam_maps,
    finer_cam,
    finer_targets,
    full_grad,
    grad_cam,
    grad_cam_ew,
    hires_cam,
    similar_classes,
)
from fame_utils.baselines.classifier_maps import CLASSIFIER_METHODS, SANITY_METHODS, classifier_maps, finer_fame, finer_loss
from fame_utils.baselines.reference_maps import centre_gaussian_maps, random_maps

__all__ = [
    "CAM_METHODS",
    "CLASSIFIER_METHODS",
    "EmptyMapWarning",
    "SANITY_METHODS",
    "cam_maps",
    "centre_gaussian_maps",
    "classifier_maps",
    "finer_fame",
    "finer_loss",
    "finer_cam",
    "finer_targets",
    "full_grad",
    "grad_cam",
    "grad_cam_ew",
    "hires_cam",
    "random_maps",
    "similar_classes",
]

from fame_utils.baselines.verification import (  # noqa: E402  (verification helper)
    VERIFICATION_METHODS,
    CosineSimilarityTarget,
    DotProductTarget,
    corrrise,
    corrrise_masks,
    corrrise_patch_origins,
    explain_pairs,
    fggb,
    fggb_gradients,
    gradcam_ew_verification,
    gradcam_verification,
)

__all__ += [
    "VERIFICATION_METHODS",
    "CosineSimilarityTarget",
    "DotProductTarget",
    "corrrise",
    "corrrise_masks",
    "corrrise_patch_origins",
    "explain_pairs",
    "fggb",
    "fggb_gradients",
    "gradcam_ew_verification",
    "gradcam_verification",
]
