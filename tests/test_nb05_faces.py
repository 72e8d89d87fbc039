"""Face-verification figures and the notebook-05 widget callback."""

from __future__ import annotations

from dataclasses import replace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from fame_utils.viz.curves import deletion_insertion_figure
from fame_utils.viz.faces import FacePairExplanations, SheetRow, face_sheet, pair_method_figure, score_histogram
from fame_utils.metrics.verification import VerificationCurves
from fame_utils.workbook import nb05_faces as faces


def _pixels(fig) -> np.ndarray:
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba()).copy()
    plt.close(fig)
    return pixels


def _explanations() -> FacePairExplanations:
    generator = torch.Generator().manual_seed(0)
    maps = {
        "FAME": {side: {"similar": torch.rand(2, 8, 8, generator=generator), "dissimilar": torch.rand(2, 8, 8, generator=generator)} for side in ("gallery", "probe")},
        "Grad-CAM": {side: {"similar": torch.rand(2, 8, 8, generator=generator), "dissimilar": None} for side in ("gallery", "probe")},
    }
    percents = tuple(float(p) for p in range(0, 101, 10))
    scores = np.linspace(1, 0, 11)[:, None] * np.array([[0.9, 0.3]])
    curves = {name: VerificationCurves(percents, scores * (k + 1) / 2, scores, np.array([1, 0]), 0.4) for k, name in enumerate(maps)}
    rgb = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    return FacePairExplanations("tiny", np.array([4, 7]), [("Ann", "Ann"), ("Ann", "Bob")], rgb, rgb[::-1].copy(), np.array([1, 0]), maps, curves)


def test_pair_figure_changes_with_pair_and_method():
    explanations = _explanations()
    base = _pixels(pair_method_figure(explanations, 4, "FAME"))
    other_pair = _pixels(pair_method_figure(explanations, 7, "FAME"))
    other_method = _pixels(pair_method_figure(explanations, 4, "Grad-CAM"))
    assert not np.array_equal(base, other_pair)
    assert not np.array_equal(base, other_method)
    with pytest.raises(ValueError, match="unknown method"):
        pair_method_figure(explanations, 4, "RISE")
    with pytest.raises(ValueError, match=r"pair 0 is not among the explored pairs \[4, 7\] of tiny"):
        pair_method_figure(explanations, 0, "FAME")


def test_pair_figure_shows_both_images_with_identities_and_marks_missing_maps():
    fig = pair_method_figure(_explanations(), 7, "Grad-CAM")
    titles = [axis.get_title() for axis in fig.axes]
    assert titles[:6] == ["gallery: Ann", "gallery e₊", "gallery e₋", "probe: Bob", "probe e₊", "probe e₋"]
    assert fig.get_suptitle() == "tiny · pair 7 (impostor) · Grad-CAM"
    missing = [axis for axis in fig.axes if axis.get_title().endswith("e₋")]
    assert all(not axis.images and axis.texts[0].get_text() == "Grad-CAM\nhas no e₋" for axis in missing)
    colour_keys = [axis for axis in fig.axes if axis.get_label() == "<colorbar>"]
    assert len(colour_keys) == 1 and colour_keys[0].get_xlim() == (0.0, 1.0)
    plt.close(fig)


def test_face_explorer_lists_pairs_by_number_and_identity_and_redraws(monkeypatch: pytest.MonkeyPatch):
    import ipywidgets

    from fame_utils.workbook.widgets import STATIC_WIDGETS_ENV, face_explorer

    monkeypatch.delenv(STATIC_WIDGETS_ENV, raising=False)
    explanations = _explanations()
    other = replace(explanations, network="other")
    explorer = face_explorer({"tiny": explanations, "other": other}, method="Grad-CAM")
    assert [label for label, _ in explorer.controls["pair"].options] == ["pair 4 · genuine · Ann / Ann", "pair 7 · impostor · Ann / Bob"]
    assert explorer.values() == {"network": "tiny", "pair": 4, "method": "Grad-CAM"}
    explorer.controls["pair"].value = 7
    explorer.controls["network"].value = "other"
    assert explorer.figure.get_suptitle() == "other · pair 7 (impostor) · Grad-CAM"
    with pytest.raises(ValueError, match="starting method 'RISE' is not one of"):
        face_explorer({"tiny": explanations}, method="RISE")
    with pytest.raises(ValueError, match=r"networks \['moved'\] were explored on other pairs"):
        face_explorer({"tiny": explanations, "moved": replace(explanations, network="moved", pairs=np.array([4, 8]))})
    assert isinstance(explorer.controls["method"], ipywidgets.Dropdown)


def _sheet_rows() -> list[SheetRow]:
    explanations = _explanations()
    return [SheetRow(f"row {i}", explanations.gallery_rgb[i], explanations.probe_rgb[i], explanations.identities[i], "probe",
                     {m: {k: None if v is None else v[i] for k, v in explanations.maps[m]["probe"].items()} for m in explanations.maps})
            for i in range(2)]


def test_face_sheet_shows_both_crops_with_identities_and_drops_e_minus_columns_a_method_lacks():
    fig = face_sheet(_sheet_rows(), ["Grad-CAM", "FAME"])
    panels = [axis for axis in fig.axes if axis.get_label() != "<colorbar>"]
    grid = np.asarray(panels).reshape(2, 5)  # gallery, probe, Grad-CAM e₊, FAME e₊, FAME e₋
    assert [[len(axis.images) for axis in row] for row in grid] == [[1, 1, 1, 1, 1]] * 2
    assert [axis.get_title() for axis in grid[0]] == ["gallery\nAnn", "probe (explained)\nAnn", "Grad-CAM\ne₊ (no e₋)", "FAME\ne₊", "FAME\ne₋"]
    assert [axis.get_title() for axis in grid[1, :2]] == ["Ann", "Bob"]
    np.testing.assert_allclose(grid[1, 0].images[0].get_array(), _explanations().gallery_rgb[1])
    assert grid[1, 0].get_ylabel() == "row 1"
    assert len([axis for axis in fig.axes if axis.get_label() == "<colorbar>"]) == 1
    plt.close(fig)


def test_face_sheet_marks_a_missing_map_in_a_column_other_rows_fill():
    rows = _sheet_rows()
    rows[1] = SheetRow(rows[1].label, rows[1].gallery, rows[1].probe, rows[1].identities, "probe", {"FAME": {"similar": rows[1].maps["FAME"]["similar"], "dissimilar": None}})
    fig = face_sheet(rows, ["FAME"])
    missing = [axis for axis in fig.axes if axis.texts]
    assert len(missing) == 1 and missing[0].texts[0].get_text() == "n/a" and not missing[0].images
    with pytest.raises(ValueError, match="side must be 'probe' or 'gallery'"):
        SheetRow("x", rows[0].gallery, rows[0].probe, ("a", "b"), "both", {})
    plt.close(fig)


def test_showcase_pairs_show_as_many_people_as_the_pairs_allow():
    from fame_utils.workbook.nb05_faces import showcase_pairs

    names = [("A", "A"), ("A", "B"), ("A", "C"), ("B", "B"), ("C", "D"), ("B", "D"), ("C", "C")]
    labels = [1, 0, 0, 1, 0, 0, 1]
    # genuine: A (0), then B (3) before C (6) by pair order; impostors: C–D (4) shares nobody with {A, B}; then every
    # remaining impostor pair shares both its people with {A, B, C, D}, so the first (1) wins
    assert showcase_pairs(labels, names, 2).tolist() == [0, 3, 4, 1]
    assert showcase_pairs(labels, names, 1, among=[1, 3, 5]).tolist() == [3, 1]
    assert showcase_pairs(labels, names, 0).tolist() == []
    with pytest.raises(ValueError, match="identities has 2 entries for 7 labels"):
        showcase_pairs(labels, names[:2], 1)


def test_deletion_insertion_figure_puts_the_auc_in_legends_that_cover_no_curve():
    explanations = _explanations()
    fig = deletion_insertion_figure(explanations.curves, clean_accuracy=1.0, title="tiny")
    labels = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    expected = f"FAME ({explanations.curves['FAME'].deletion_auc:.1f})"
    assert expected in labels and "clean (100.0)" in labels
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    areas = [axis.get_window_extent(renderer) for axis in fig.axes]
    legends = [axis.get_legend().get_window_extent(renderer) for axis in fig.axes]
    assert not any(legend.overlaps(area) for legend in legends for area in areas)
    plt.close(fig)


def test_score_histogram_draws_one_panel_per_network():
    frame = pd.DataFrame({"network": ["a", "a", "b", "b"], "score": [0.9, 0.1, 0.8, 0.2], "pair": ["genuine", "impostor"] * 2})
    fig = score_histogram(frame, {"a": 0.5, "b": 0.4})
    assert [axis.get_title() for axis in fig.axes] == ["a: θ = 0.500", "b: θ = 0.400"]
    plt.close(fig)


def test_sheet_rows_and_pair_explanations_pick_each_pairs_maps() -> None:
    from types import SimpleNamespace

    from fame_utils.workbook.nb05_faces import pair_explanations, sheet_rows

    maps = torch.arange(3 * 4 * 4, dtype=torch.float32).reshape(3, 4, 4)
    explained = {"A": {"probe": {"similar": maps, "dissimilar": None}}}
    spec = SimpleNamespace(to_display=lambda t: t.movedim(-3, -1).numpy())
    images = torch.rand(5, 3, 4, 4)
    pair_set = SimpleNamespace(network="net", spec=spec, probes=images, gallery=images, labels=np.array([1, 0, 1, 0, 1]))
    names = [("g0", "p0"), ("g1", "p1"), ("g2", "p2"), ("g3", "p3"), ("g4", "p4")]
    rows = sheet_rows({"net": pair_set}, {"net": explained}, np.array([1, 3, 4]), [4, 1], "probe", ["A"], names)
    assert [row.label for row in rows] == ["net\npair 4 genuine", "net\npair 1 impostor"]
    assert [row.identities for row in rows] == [("g4", "p4"), ("g1", "p1")] and rows[0].side == "probe"
    np.testing.assert_array_equal(rows[1].gallery, images[1].movedim(0, -1).numpy())
    assert torch.equal(rows[0].maps["A"]["similar"], maps[2]) and rows[0].maps["A"]["dissimilar"] is None
    with pytest.raises(ValueError, match="pair 0 was not explained"):
        sheet_rows({"net": pair_set}, {"net": explained}, np.array([1, 3, 4]), [0], "probe", ["A"], names)
    with pytest.raises(ValueError, match="identities has 3 entries"):
        sheet_rows({"net": pair_set}, {"net": explained}, np.array([1, 3, 4]), [1], "probe", ["A"], names[:3])
    curves = {"A": SimpleNamespace(subset=lambda positions: positions)}
    gallery_side = {"A": {"gallery": {"similar": maps[:2], "dissimilar": maps[:2]}}}
    explorer = pair_explanations(pair_set, explained, np.array([1, 3, 4]), gallery_side, np.array([3, 4]), curves, ["A"], names)
    assert explorer.gallery_rgb.shape == (2, 4, 4, 3) and explorer.labels.tolist() == [0, 1]
    assert explorer.pairs.tolist() == [3, 4] and explorer.identities == [("g3", "p3"), ("g4", "p4")]
    with pytest.raises(ValueError, match="identities has 4 entries for a pair set of 5 pairs"):
        pair_explanations(pair_set, explained, np.array([1, 3, 4]), gallery_side, np.array([3, 4]), curves, ["A"], names[:4])
    assert torch.equal(explorer.maps["A"]["probe"]["similar"], maps[[1, 2]]) and explorer.curves["A"] == [1, 2]


def _table2(deletion_shift: float) -> pd.DataFrame:
    rows = {("sface", "FAME"): (84.0, 93.0), ("sface", "Grad-CAM"): (90.0, 70.0), ("sface", "centre Gaussian (reference)"): (83.0 + deletion_shift, 92.5),
            ("sface", "random (reference)"): (86.0, 75.0), ("dlib", "FAME"): (85.0, 94.0), ("dlib", "Grad-CAM"): (84.5, 95.0),
            ("dlib", "centre Gaussian (reference)"): (83.5, 91.0), ("dlib", "random (reference)"): (88.0, 70.0)}
    index = pd.MultiIndex.from_tuples(list(rows), names=["network", "method"])
    return pd.DataFrame(list(rows.values()), index=index, columns=["deletion", "insertion"])


def test_findings_quote_table2_per_network() -> None:
    lines = faces.findings(_table2(0.0), _table2(1.0) - 2.0, {"sface": 37, "dlib": 37}, 45,
                           {"sface": {"Grad-CAM": 0.8, "FAME": 1.3}, "dlib": {"Grad-CAM": 1.2, "FAME": 1.4}})
    assert len(lines) == 8 and all(line.startswith("sface: ") for line in lines[:4])
    assert lines[0] == ("sface: deletion AUC of every ranking lies in 83.0–90.0, against an impostor floor of 82.2 "
                        "(37 of 45 pairs are impostors); FAME 84.0.")
    assert lines[1] == "sface: highest insertion AUC FAME 93.0; FAME 93.0; centre Gaussian (reference) 92.5; random (reference) 75.0."
    assert lines[2] == "sface: deletion not below insertion (fails the basic sanity check) for: Grad-CAM, random (reference) (centre share of their e₊ mass on sface: Grad-CAM 0.80)."
    assert lines[3] == "sface: at the 4-decimal θ, FAME scores deletion 82.0 / insertion 91.0 (default θ: 84.0 / 93.0)."
    assert lines[5].startswith("dlib: highest insertion AUC Grad-CAM 95.0;") and lines[6].endswith("for: random (reference).")
