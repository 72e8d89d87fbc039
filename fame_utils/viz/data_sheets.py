"""Check sheets for the shipped data: object photos with their boxes, face pairs, a face alignment, detections.

Draws what :mod:`fame_utils.data` loads; knows nothing of networks or methods.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import matplotlib.pyplot as plt
import numpy as np

from fame_utils.viz.maps import draw_box

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from fame_utils.data.faces import FacePair
    from fame_utils.data.objects import ObjectImage

__all__ = ["alignment_figure", "detection_figure", "draw_boxes", "face_pair_sheet", "object_box_sheet"]

_COLOURS = ("#ff2d2d", "#2dd0ff", "#ffe02d", "#7dff2d", "#ff2dd7")


def draw_boxes(ax, boxes: Sequence[Sequence[float]], colour: str = "#ff2d2d", labels: Sequence[str] | None = None, width: float = 2.0) -> None:
    """Draw end-exclusive (x0, y0, x1, y1) boxes on an ``imshow`` axis (pixel centres at integers)."""
    for index, box in enumerate(boxes):
        draw_box(ax, box, colour, width)
        if labels:
            ax.text(box[0], box[1], labels[index], color="black", fontsize=7, va="bottom", ha="left",
                    bbox={"facecolor": colour, "edgecolor": "none", "pad": 1, "alpha": 0.85})


def object_box_sheet(objects: Sequence["ObjectImage"], columns: int = 5, panel_inches: float = 2.8, thumbnail_side: int = 400) -> "Figure":
    """One panel per photo with every annotated box and its ImageNet class name (target first).

    Photos are drawn as thumbnails (longer side ``thumbnail_side``) in original-pixel coordinates.
    """
    rows = math.ceil(len(objects) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * panel_inches, rows * panel_inches * 0.85), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, obj in zip(axes.flat, objects):
        thumbnail = obj.image.copy()
        thumbnail.thumbnail((thumbnail_side, thumbnail_side))
        ax.imshow(np.asarray(thumbnail), extent=(-0.5, obj.image.width - 0.5, obj.image.height - 0.5, -0.5))
        for index, (box, name) in enumerate(zip(obj.boxes, obj.class_names)):
            draw_boxes(ax, [box], _COLOURS[index % len(_COLOURS)] if len(set(obj.classes)) > 1 else _COLOURS[0], [name] if index == 0 or obj.classes[index] != obj.classes[index - 1] else None)
        ax.set_title(f"{obj.name} ({obj.image.width}x{obj.image.height})", fontsize=8)
    fig.tight_layout()
    return fig


def face_pair_sheet(pairs: Sequence["FacePair"], columns: int = 4, panel_inches: float = 1.25) -> "Figure":
    """Gallery | probe thumbnails per pair, titled genuine (green) or impostor (red)."""
    rows = math.ceil(len(pairs) / columns)
    fig, axes = plt.subplots(rows, 2 * columns, figsize=(2 * columns * panel_inches, rows * panel_inches * 1.15), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for index, pair in enumerate(pairs):
        row, col = divmod(index, columns)
        left, right = axes[row, 2 * col], axes[row, 2 * col + 1]
        left.imshow(np.asarray(pair.gallery))
        right.imshow(np.asarray(pair.probe))
        colour = "green" if pair.genuine else "red"
        left.set_title(pair.gallery_id, fontsize=7, color=colour)
        right.set_title(pair.probe_id, fontsize=7, color=colour)
    fig.tight_layout()
    return fig


def alignment_figure(photo, detection, aligned, template: np.ndarray) -> "Figure":
    """Left: the photo with the MTCNN box and 5 landmarks; right: the aligned crop with the template points."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 4), gridspec_kw={"width_ratios": [photo.width / photo.height, 1]})
    left.imshow(np.asarray(photo))
    draw_boxes(left, [detection.box], "#2dd0ff")
    left.scatter(detection.landmarks[:, 0], detection.landmarks[:, 1], s=25, c="#ff2d2d", edgecolors="white", linewidths=0.5)
    left.set_title(f"MTCNN detection (p = {detection.probability:.4f}) and 5 landmarks", fontsize=9)
    right.imshow(np.asarray(aligned))
    right.scatter(template[:, 0], template[:, 1], s=40, marker="+", c="#ffe02d", linewidths=1.5)
    right.set_title(f"aligned {aligned.width}x{aligned.height}; + = template", fontsize=9)
    for ax in (left, right):
        ax.axis("off")
    fig.tight_layout()
    return fig


def detection_figure(photo, truth: Sequence[Sequence[float]], detected: Sequence[Sequence[float]], matched_iou: Sequence[float]) -> "Figure":
    """Ground-truth boxes (green if matched, red if missed) and detector boxes (cyan) on one photo."""
    fig, ax = plt.subplots(figsize=(9, 9 * photo.height / photo.width))
    ax.imshow(np.asarray(photo))
    draw_boxes(ax, list(detected), "#2dd0ff", width=1.2)
    draw_boxes(ax, [b for b, iou in zip(truth, matched_iou) if iou > 0], "#3cff3c", width=1.6)
    draw_boxes(ax, [b for b, iou in zip(truth, matched_iou) if iou == 0], "#ff2d2d", width=2.2)
    hits = sum(iou > 0 for iou in matched_iou)
    ax.set_title(f"MTCNN (cyan) vs ground truth: {hits}/{len(truth)} matched (green), missed in red", fontsize=10)
    ax.axis("off")
    fig.tight_layout()
    return fig
