"""Every drawing primitive and generic figure: maps and overlays, sheets, locality figures, face sheets, data sheets
and curves.

Submodules: ``maps`` (primitives), ``sheets``, ``locality``, ``faces``, ``curves`` and ``data_sheets``. Plotting imports
the measurements it draws (locality, metrics) but nothing of evaluation runners or notebooks.
"""

from fame_utils.viz import curves, data_sheets, faces, locality, maps, sheets
from fame_utils.viz.curves import *  # noqa: F403
from fame_utils.viz.data_sheets import *  # noqa: F403
from fame_utils.viz.faces import *  # noqa: F403
from fame_utils.viz.locality import *  # noqa: F403
from fame_utils.viz.maps import *  # noqa: F403
from fame_utils.viz.sheets import *  # noqa: F403

__all__ = [*maps.__all__, *sheets.__all__, *locality.__all__, *faces.__all__, *curves.__all__, *data_sheets.__all__]
