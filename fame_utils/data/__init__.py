"""Shipped real data and loaders for the paper's datasets.

- :mod:`~fame_utils.data.images`: ``load_image`` (any file → upright 8-bit RGB, or ``ImageLoadError``; the
  module docstring lists what converts and what is refused).
- :mod:`~fame_utils.data.objects`: 20 real photos with hand-annotated ImageNet boxes (``object_images``).
- :mod:`~fame_utils.data.faces`: MTCNN + similarity alignment, 10 aligned portraits and their pairs
  (``face_pairs``), the Solvay 1927 photo with 30 face boxes.
- :mod:`~fame_utils.data.imagenet`: ImageNet val protocol (k per class, first box) and ``map_box``.
- :mod:`~fame_utils.data.protocols`: AR Face / SCface / CFP ``G, P, T`` protocols over images or HDF5 crops.

``python -m fame_utils.data align`` regenerates ``data/faces/`` (build time only).
"""

from fame_utils.data import faces, imagenet, images, objects, protocols
from fame_utils.data.faces import *  # noqa: F403
from fame_utils.data.imagenet import *  # noqa: F403
from fame_utils.data.images import *  # noqa: F403
from fame_utils.data.objects import *  # noqa: F403
from fame_utils.data.protocols import *  # noqa: F403

__all__ = [*faces.__all__, *images.__all__, *imagenet.__all__, *objects.__all__, *protocols.__all__]
