"""Table 2 on a user's protocol: the pipeline runs end to end on a synthetic AR-style protocol."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fame_utils.data import load_face_protocol
from fame_utils.evaluation.verification import protocol_aucs, user_protocol_table
from fame_utils.fame import FameConfig
from fame_utils.models import load_model


def _ar_protocol(root):
    protocols, images = root / "protocols", root / "images"
    (protocols / "ARface").mkdir(parents=True)
    generator = np.random.default_rng(0)
    names = ["s1/neutral.png", "s1/scarf.png", "s2/neutral.png", "s2/scarf.png"]
    for name in names:
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(generator.integers(0, 256, (112, 112, 3), dtype=np.uint8)).save(images / name)
    rows = ["s1/neutral.png,s1/scarf.png,1", "s2/neutral.png,s2/scarf.png,1", "s1/neutral.png,s2/scarf.png,0", "s2/neutral.png,s1/scarf.png,0"]
    (protocols / "ARface" / "scarf.csv").write_text("G,P,T\n" + "\n".join(rows) + "\n")
    return protocols, images


@pytest.mark.slow
def test_user_protocol_table_covers_available_protocols_and_reports_missing_ones(tmp_path) -> None:
    protocols, images = _ar_protocol(tmp_path)
    spec = load_model("sface", weights=None, device="cpu")
    config = FameConfig(iterations=2)
    table, skipped = user_protocol_table({"sface": spec}, protocols, images, config, n_masks=4,
                                         protocols={"ARface": ("scarf", "glass")})
    assert list(table["method"]) == ["Grad-CAM", "Grad-CAM-EW", "CorrRISE", "FGGB", "FAME"]
    assert set(table["protocol"]) == {"scarf"} and set(table["network"]) == {"sface"}
    assert table[["deletion", "insertion"]].apply(lambda column: column.between(0, 100)).all().all()
    assert len(skipped) == 1 and "ARface/glass skipped" in skipped[0] and "glass.csv" in skipped[0]
    again = protocol_aucs(spec, load_face_protocol("ARface", "scarf", protocols, images), config, n_masks=4)
    assert again == {row.method: (row.deletion, row.insertion) for row in table.itertuples()}


def test_empty_protocol_is_rejected() -> None:
    with pytest.raises(ValueError, match="no pairs"):
        protocol_aucs(load_model("sface", weights=None, device="cpu"), [], FameConfig(iterations=1))


def test_user_checkpoints_loads_present_files_only(tmp_path) -> None:
    import torch

    from fame_utils.models import user_checkpoints

    random = load_model("iresnet18", weights=None, device="cpu")
    torch.save({"state_dict": {f"model.{k}": v for k, v in random.module.state_dict().items()}}, tmp_path / "iresnet18.ckpt")
    specs = user_checkpoints(tmp_path, ("iresnet18", "iresnet50"), device="cpu")
    assert list(specs) == ["iresnet18"]
    with pytest.raises(FileNotFoundError, match="not found"):
        user_checkpoints(tmp_path / "missing", ("iresnet18",))


# ---------------------------------------------------------------- the shipped-pairs study of notebook 05
def test_select_pairs_takes_the_first_of_each_type_in_order() -> None:
    from fame_utils.evaluation.verification import select_pairs

    labels = [0, 1, 1, 0, 0, 1]
    assert select_pairs(labels, 1).tolist() == [0, 1]
    assert select_pairs(labels, 2).tolist() == [0, 1, 2, 3]
    assert select_pairs(labels, None).tolist() == [0, 1, 2, 3, 4, 5]


def test_centre_share_of_uniform_centred_and_border_maps() -> None:
    import torch

    from fame_utils.evaluation.verification import centre_share

    assert centre_share(torch.ones(2, 8, 8)) == pytest.approx(1.0)
    centred = torch.zeros(1, 8, 8)
    centred[:, 2:6, 2:6] = 1.0
    assert centre_share(centred) == pytest.approx(4.0)  # all mass on a quarter of the area
    border = 1.0 - centred
    assert centre_share(border) == pytest.approx(0.0)


def _pair_set():
    import torch

    from fame_utils.evaluation.verification import pair_set

    spec = load_model("sface", weights=None, device="cpu")
    generator = torch.Generator().manual_seed(0)
    gallery = torch.rand(4, 3, 112, 112, generator=generator)
    probes = gallery.clone()
    probes[2:] = torch.rand(2, 3, 112, 112, generator=generator)
    return pair_set("sface", spec, gallery, probes, [1, 1, 0, 0])


def test_pair_set_scores_pairs_and_finds_their_eer_threshold() -> None:
    from fame_utils.evaluation.verification import clean_table, score_frame
    from fame_utils.metrics.verification import eer_threshold, verification_accuracy

    scored = _pair_set()
    assert scored.scores[:2] == pytest.approx([1.0, 1.0], abs=1e-5)  # a probe identical to its gallery image
    assert (scored.threshold, scored.eer) == eer_threshold(scored.scores, scored.labels, rule="midpoint")
    clean = clean_table({"sface": scored})
    assert clean.loc["sface", "pairs"] == 4 and clean.loc["sface", "genuine"] == 2
    assert clean.loc["sface", "clean_accuracy"] == scored.clean_accuracy
    assert scored.threshold_4dp == eer_threshold(scored.scores, scored.labels, paper_faithful=True)[0]
    assert clean.loc["sface", "clean_accuracy_4dp"] == verification_accuracy(scored.scores, scored.labels, scored.threshold_4dp)
    frame = score_frame({"sface": scored})
    assert frame["pair"].tolist() == ["genuine", "genuine", "impostor", "impostor"]
    with pytest.raises(ValueError, match="must match"):
        from fame_utils.evaluation.verification import pair_set

        pair_set("sface", scored.spec, scored.gallery, scored.probes[:3], [1, 1, 0, 0])


@pytest.mark.slow
def test_probe_curves_auc_table_and_record_on_random_weights() -> None:
    import numpy as np
    import torch

    from fame_utils.evaluation.verification import REFERENCE_MAPS, auc_record, auc_table, curves_at_thresholds, probe_curves

    scored = _pair_set()
    indices = np.array([0, 2])
    centre = torch.zeros(2, 112, 112)
    centre[:, 28:84, 28:84] = 1.0
    curves = probe_curves(scored, indices, {"A": centre, "B": 1.0 - centre}, seed=0)
    assert list(curves) == ["A", "B", *REFERENCE_MAPS]
    assert all(curve.labels.tolist() == [1, 0] for curve in curves.values())
    assert all(curve.threshold == scored.threshold for curve in curves.values())
    rounded = probe_curves(scored, indices, {"A": centre}, seed=0, threshold=scored.threshold_4dp)
    assert rounded["A"].threshold == scored.threshold_4dp
    np.testing.assert_array_equal(rounded["A"].deletion_scores, curves["A"].deletion_scores)
    redecided = curves_at_thresholds({"sface": curves}, {"sface": scored.threshold_4dp})["sface"]
    assert list(redecided) == list(curves) and redecided["A"].threshold == scored.threshold_4dp
    np.testing.assert_array_equal(redecided["A"].deletion, rounded["A"].deletion)
    np.testing.assert_array_equal(redecided["A"].insertion, rounded["A"].insertion)
    with pytest.raises(KeyError, match="no threshold for \\['sface'\\]"):
        curves_at_thresholds({"sface": curves}, {"dlib_resnet": 0.5})
    table = auc_table({"sface": curves}, n_boot=20, seed=0)
    assert table.index.tolist() == [("sface", m) for m in curves]
    assert table[["deletion", "insertion"]].apply(lambda column: column.between(0, 100)).all().all()
    record, means = auc_record(table, ("A", "B"))
    assert list(means.index) == ["A", "B", *REFERENCE_MAPS]
    assert record["deletion_auc"] == {"A": table.loc[("sface", "A"), "deletion"], "B": table.loc[("sface", "B"), "deletion"]}
    assert set(record["reference_auc"]) == set(REFERENCE_MAPS)
    assert record["deletion_below_insertion"]["A"] == bool(table.loc[("sface", "A"), "deletion"] < table.loc[("sface", "A"), "insertion"])
