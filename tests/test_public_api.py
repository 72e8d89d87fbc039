"""The public API: every name a module lists in ``__all__`` exists, and the names external checks import keep their paths."""

from __future__ import annotations

import importlib

import pytest

from conftest import package_modules

#: Import paths other code relies on (keep them and their meaning).
PUBLIC = {
    "fame_utils.fame": ["FameConfig", "optimize", "attribution", "explain_locations", "explain_class", "explain_verification", "class_objective"],
    "fame_utils.locality": ["in_cell_mass"],
    "fame_utils.metrics": ["iou", "percentile_masks", "eer_threshold"],
    "fame_utils.models": ["load_model", "available_models"],
    "fame_utils.data": ["object_images", "face_pairs", "load_image", "ImageLoadError", "align_face"],
}


@pytest.mark.parametrize("name", [name for name in sorted(package_modules()) if not name.endswith("__main__")])
def test_every_name_in_all_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", [])
    assert len(exported) == len(set(exported)), f"{name}.__all__ lists a name twice"
    missing = [item for item in exported if not hasattr(module, item)]
    assert not missing, f"{name}.__all__ lists names it does not define: {missing}"


@pytest.mark.parametrize("module, names", sorted(PUBLIC.items()))
def test_public_names_import_from_their_documented_paths(module: str, names: list[str]) -> None:
    imported = importlib.import_module(module)
    assert all(callable(getattr(imported, item)) for item in names)
    assert set(names) <= set(imported.__all__)


def test_public_names_keep_their_meaning() -> None:
    import torch

    from fame_utils.fame import FameConfig, attribution
    from fame_utils.locality import in_cell_mass
    from fame_utils.metrics import eer_threshold, iou

    assert FameConfig() == FameConfig(step_size=1 / 255, iterations=500, epsilon=None, clamp=None, blur_kernel=49, blur_sigma=7.7)
    image = torch.zeros(1, 1, 8, 8)
    perturbed = image.clone()
    perturbed[0, 0, 2, 3] = 1.0
    assert attribution(image, perturbed, FameConfig(blur_kernel=None))[0].nonzero().tolist() == [[2, 3]]
    assert in_cell_mass(torch.ones(4, 4, 4), (2, 2)).tolist() == [0.25] * 4
    assert iou(torch.ones(4, 4), (0, 0, 2, 2), 0.5) == pytest.approx(4 / 16)
    assert eer_threshold([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == (0.8, 0.0)
