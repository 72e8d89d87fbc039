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

from fame_utils.data.faces import (
    MIN_FACE_SIDE,
    TEMPLATES,
    AlignmentError,
    FaceDetection,
    FaceImage,
    FaceNotFoundError,
    FacePair,
    align_face,
    align_to_template,
    box_iou,
    detect_faces,
    face_image,
    face_images,
    face_pairs,
    match_boxes,
    solvay_boxes,
    solvay_image,
)
from fame_utils.data.images import MIN_IMAGE_SIDE, ImageLoadError, load_image, to_rgb
from fame_utils.data.imagenet import (
    ImageNetSample,
    imagenet_protocol,
    load_imagenet_protocol,
    load_synset_mapping,
    map_box,
    parse_prediction_string,
    sample_imagenet_protocol,
    write_imagenet_protocol,
)
from fame_utils.data.objects import ObjectImage, imagenet_categories, object_image, object_image_names, object_images
from fame_utils.data.protocols import (
    FACE_PROTOCOLS,
    ProtocolError,
    ProtocolPair,
    h5_filename,
    load_crop,
    load_face_protocol,
    read_face_protocol,
)

__all__ = [
    "AlignmentError",
    "FACE_PROTOCOLS",
    "FaceDetection",
    "FaceImage",
    "FaceNotFoundError",
    "FacePair",
    "ImageLoadError",
    "ImageNetSample",
    "MIN_FACE_SIDE",
    "MIN_IMAGE_SIDE",
    "ObjectImage",
    "ProtocolError",
    "ProtocolPair",
    "TEMPLATES",
    "align_face",
    "align_to_template",
    "box_iou",
    "detect_faces",
    "face_image",
    "face_images",
    "face_pairs",
    "h5_filename",
    "imagenet_categories",
    "imagenet_protocol",
    "load_crop",
    "load_face_protocol",
    "load_image",
    "load_imagenet_protocol",
    "load_synset_mapping",
    "map_box",
    "match_boxes",
    "object_image",
    "object_image_names",
    "object_images",
    "parse_prediction_string",
    "read_face_protocol",
    "sample_imagenet_protocol",
    "solvay_boxes",
    "solvay_image",
    "to_rgb",
    "write_imagenet_protocol",
]
