"""Table 2 on a user's protocol: the pipeline runs end to end on a synthetic AR-style protocol."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fame_utils.data import load_face_protocol
from fame_utils.face_benchmark import protocol_aucs, user_protocol_table
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
