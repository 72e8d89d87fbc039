"""The rivals of FAME, grouped by mechanism: CAMs (grad-cam package; classifier and similarity targets), gradients
(FGGB), perturbation (CorrRISE), reference maps (random, centre Gaussian), Finer-FAME (ours, in ``finer``), and the
registry that runs any of them by name.

Knows nothing of metrics, benchmarks or plotting.
"""

from fame_utils.baselines import cam, finer, gradient, perturbation, reference, registry, similarity
from fame_utils.baselines.cam import *  # noqa: F403
from fame_utils.baselines.finer import *  # noqa: F403
from fame_utils.baselines.gradient import *  # noqa: F403
from fame_utils.baselines.perturbation import *  # noqa: F403
from fame_utils.baselines.reference import *  # noqa: F403
from fame_utils.baselines.registry import *  # noqa: F403
from fame_utils.baselines.similarity import *  # noqa: F403

__all__ = [*cam.__all__, *gradient.__all__, *perturbation.__all__, *reference.__all__, *finer.__all__, *registry.__all__, *similarity.__all__]
