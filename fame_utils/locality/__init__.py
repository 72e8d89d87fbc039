"""CAM's locality assumption, measured: CAM cells and in-cell mass, stage geometry, input gradients of one cell,
theoretical receptive fields and the per-stage tables built from them.

Submodules: ``cells``, ``stages``, ``gradients`` (the one gradient engine), ``receptive_field`` and ``stats``.
No plotting here (see :mod:`fame_utils.viz.locality`) and nothing of notebooks.
"""

from fame_utils.locality import cells, gradients, receptive_field, stages, stats
from fame_utils.locality.cells import *  # noqa: F403
from fame_utils.locality.gradients import *  # noqa: F403
from fame_utils.locality.receptive_field import *  # noqa: F403
from fame_utils.locality.stages import *  # noqa: F403
from fame_utils.locality.stats import *  # noqa: F403

__all__ = [*cells.__all__, *stages.__all__, *gradients.__all__, *receptive_field.__all__, *stats.__all__]
