"""FAME: Feature Activation Map Explanation (Zhang & Günther, arXiv 2605.12017) — the method only.

FAME asks "which pixels must change to drive this quantity down?" and answers it by running the LOTS
optimiser (paper Eq. 3) on a task loss and reading the accumulated perturbation |x̄ − x| as an attribution
(Eq. 4). The loss encodes the question (paper Sec. 3.4):

* one feature-map location k of a layer: L_a = ‖a[k](x̄)‖₁ (Eq. 5) → :func:`explain_locations`;
* a class logit: L_cls = z_o (|z_o| when ``paper_faithful``) → :func:`explain_class`;
* face verification: L₊ = s(φ(x̄), φ_ref) and L₋ = 1 − s (Eq. 6) → :func:`explain_verification`.

Submodules: ``config`` (:class:`FameConfig`), ``optimizer`` (LOTS loop, trace, early stop), ``losses``,
``attribution`` (gray, difference, blur, normalise), ``explain`` (entry points) and ``sweeps``.
This package knows nothing of baselines, metrics, pandas or matplotlib.
"""

from fame_utils.fame.attribution import GRAY_WEIGHTS, attribution, blur_map, normalize_map, perturbation_map, to_gray
from fame_utils.fame.config import NORMALIZATIONS, PAPER_CLASS_EPSILON, FameConfig
from fame_utils.fame.explain import all_locations, explain_class, explain_locations, explain_verification, feature_grid
from fame_utils.fame.losses import class_loss, class_objective, cosine_similarity, finer_loss, location_loss, verification_loss
from fame_utils.fame.optimizer import LossFn, OptimizationTrace, SampleLoss, optimize
from fame_utils.fame.sweeps import blur_sweep, iteration_sweep, step_size_sweep, sweep_sigma

__all__ = [
    "FameConfig",
    "OptimizationTrace",
    "LossFn",
    "SampleLoss",
    "optimize",
    "to_gray",
    "perturbation_map",
    "blur_map",
    "normalize_map",
    "attribution",
    "location_loss",
    "class_loss",
    "class_objective",
    "cosine_similarity",
    "verification_loss",
    "finer_loss",
    "feature_grid",
    "all_locations",
    "explain_locations",
    "explain_class",
    "explain_verification",
    "sweep_sigma",
    "blur_sweep",
    "iteration_sweep",
    "step_size_sweep",
    "GRAY_WEIGHTS",
    "NORMALIZATIONS",
    "PAPER_CLASS_EPSILON",
]
