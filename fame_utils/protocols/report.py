"""Merge a protocol store into Table 1 (classification) or Table 2 (verification) with bootstrap intervals.

Items are read in item-id order, whatever rank wrote them, so one rank or many give the same tables; methods appear
under their display labels (``FAME-paper-faithful`` → "FAME (paper-faithful)"). A missing
or damaged item stops the report (it is never merged); rerunning ``run`` with the same arguments recomputes it.
Knows nothing about ranks or how the items were computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fame_utils.baselines import method_label
from fame_utils.evaluation.classification import BOX_CONVENTIONS, format_table, summarize
from fame_utils.metrics import RoadCurves, VerificationCurves, bootstrap_auc_interval
from fame_utils.protocols.errors import IncompleteStoreError, StoreMismatchError
from fame_utils.protocols.manifest import PLAN_NAME, read_json
from fame_utils.protocols.store import CorruptItemError, ItemStore, load_arrays, write_atomic

__all__ = ["ProtocolReport", "load_items", "report"]


@dataclass(frozen=True)
class ProtocolReport:
    """The merged table of one or more run folders.

    Attributes:
        name: ``"table1"`` (classification) or ``"table2"`` (verification).
        table: readable table (``mean [low, high]`` cells for Table 1; numeric columns for Table 2).
        long: numbers behind it (Table 1: per network × method × metric; Table 2: per split × network × method).
        records: per-item values the table reduces (Table 1) or per-pair sweep inputs (Table 2), in item order.
        files: files written (CSV and Markdown), if any.
    """

    name: str
    table: pd.DataFrame
    long: pd.DataFrame
    records: pd.DataFrame
    files: list[Path] = field(default_factory=list)


def _plan_of(folder: Path) -> dict[str, Any]:
    plan = read_json(folder / PLAN_NAME)
    if plan is None:
        raise StoreMismatchError(f"{folder} holds no protocol run ({PLAN_NAME} missing); run `python -m fame_utils.protocols run --out {folder} …` first.")
    return plan


def load_items(folder: str | Path, method: str) -> dict[str, dict[str, np.ndarray]]:
    """Every stored item of ``method`` in a run folder, verified, in item-id order.

    Raises:
        IncompleteStoreError: an item of the plan is missing or damaged (all problems are counted).
    """
    folder = Path(folder)
    plan, store = _plan_of(folder), ItemStore(folder)
    if method not in plan["methods"]:
        raise IncompleteStoreError(f"{folder} has no results for method {method!r}; it holds {plan['methods']}.")
    return _load_all(folder, plan, store, [method])[method]


def _load_all(folder: Path, plan: dict[str, Any], store: ItemStore, methods: Sequence[str]) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    loaded: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    problems: list[str] = []
    for method in methods:
        loaded[method] = {}
        for item_id in sorted(plan["items"]):
            try:
                loaded[method][item_id] = store.load(method, item_id)
            except FileNotFoundError:
                problems.append(f"{method}/{item_id}: missing")
            except CorruptItemError as error:
                problems.append(f"{method}/{item_id}: {error}")
    if problems:
        raise IncompleteStoreError(
            f"{folder}: {len(problems)} of {len(plan['items']) * len(methods)} items are missing or damaged, e.g. {'; '.join(problems[:3])}. "
            "Nothing was merged: rerun `python -m fame_utils.protocols run` with the folder's arguments to compute them."
        )
    return loaded


def _classification_records(folder: Path, plan: dict[str, Any], store: ItemStore) -> pd.DataFrame:
    settings = plan["settings"]
    percents, thresholds = tuple(settings["percents"]), settings["thresholds"]
    rows = []
    for method, items in _load_all(folder, plan, store, plan["methods"]).items():
        ids = list(items)
        curves = RoadCurves(percents, *(torch.from_numpy(np.stack([items[i][key] for i in ids])) for key in ("clean", "deletion", "insertion")))
        deletion, insertion = curves.deletion_auc(), curves.insertion_auc()
        for row, item_id in enumerate(ids):
            scores = items[item_id]["iou"]
            columns = {f"iou@{tau:g} ({convention})": 100.0 * float(scores[c, t])
                       for c, convention in enumerate(BOX_CONVENTIONS) for t, tau in enumerate(thresholds)}
            rows.append({"network": plan["network"], "sample": item_id, "method": method_label(method), **columns,
                         "deletion_auc": float(deletion[row]), "insertion_auc": float(insertion[row])})
    return pd.DataFrame(rows)


def _verification_rows(folder: Path, plan: dict[str, Any], store: ItemStore, n_boot: int, level: float) -> tuple[list[dict], pd.DataFrame]:
    percents, seed = tuple(plan["settings"]["percents"]), plan["settings"]["seed"]
    loaded = _load_all(folder, plan, store, plan["methods"])
    splits = sorted({item_id.rsplit("-", 1)[0] for item_id in plan["items"]})
    rows, records = [], []
    for split in splits:
        context = load_arrays(store.context_path(split))
        threshold = float(context["threshold"])
        for method in plan["methods"]:
            ids = [i for i in loaded[method] if i.rsplit("-", 1)[0] == split]
            items = [loaded[method][i] for i in ids]
            curves = VerificationCurves(percents, np.stack([it["deletion"] for it in items], axis=1), np.stack([it["insertion"] for it in items], axis=1),
                                        np.array([int(it["label"]) for it in items]), threshold)
            low_d, high_d = bootstrap_auc_interval(curves, "deletion", n_boot=n_boot, level=level, seed=seed)
            low_i, high_i = bootstrap_auc_interval(curves, "insertion", n_boot=n_boot, level=level, seed=seed)
            rows.append({"split": split, "network": plan["network"], "method": method_label(method), "pairs": len(ids), "threshold": threshold,
                         "deletion": curves.deletion_auc, "deletion_low": low_d, "deletion_high": high_d,
                         "insertion": curves.insertion_auc, "insertion_low": low_i, "insertion_high": high_i})
            records += [{"split": split, "network": plan["network"], "method": method_label(method), "pair": i, "label": int(it["label"]),
                         **{f"deletion@{p:g}": s for p, s in zip(percents, it["deletion"])},
                         **{f"insertion@{p:g}": s for p, s in zip(percents, it["insertion"])}} for i, it in zip(ids, items)]
    return rows, pd.DataFrame(records)


def _readable_table2(long: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    def cell(kind: str) -> list[str]:
        return [f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]" for m, lo, hi in zip(long[kind], long[f"{kind}_low"], long[f"{kind}_high"])]

    return pd.DataFrame({"split": long["split"], "network": long["network"], "method": long["method"], "pairs": long["pairs"],
                         "deletion AUC (%) ↓": cell("deletion"), "insertion AUC (%) ↑": cell("insertion")})


def _write_tables(tables_dir: Path, name: str, table: pd.DataFrame, long: pd.DataFrame) -> list[Path]:
    outputs = {f"{name}.csv": table.to_csv(index=False), f"{name}.md": table.to_markdown(index=False) + "\n",
               f"{name}_long.csv": long.to_csv(index=False)}
    return [write_atomic(tables_dir / file, lambda handle, text=text: handle.write(text.encode())) for file, text in outputs.items()]


def report(folders: Sequence[str | Path], tables_dir: str | Path | None = None, n_boot: int = 1000, level: float = 0.95) -> ProtocolReport:
    """Merge run folders (one network each, same task) into their table; write CSV + Markdown to ``tables_dir``.

    Args:
        folders: run folders of the same task (e.g. one per network).
        tables_dir: where ``table1.csv/.md`` (or ``table2``) and ``*_long.csv`` go; None writes nothing.
        n_boot: bootstrap resamples (Table 2; Table 1 uses its summary's own count).
        level: confidence level of the intervals.

    Raises:
        StoreMismatchError: a folder holds no run, or folders of different tasks are mixed.
        IncompleteStoreError: an item is missing or damaged (nothing is merged).
    """
    paths = [Path(folder) for folder in folders]
    if not paths:
        raise ValueError("report needs at least one run folder.")
    plans = [_plan_of(path) for path in paths]
    tasks = {plan["task"] for plan in plans}
    if len(tasks) != 1:
        raise StoreMismatchError(f"cannot merge folders of different tasks {sorted(tasks)} into one table; report them separately.")
    if tasks == {"classification"}:
        records = pd.concat([_classification_records(path, plan, ItemStore(path)) for path, plan in zip(paths, plans)], ignore_index=True)
        long = summarize(records, seed=plans[0]["settings"]["seed"], confidence=level)
        name, table = "table1", format_table(long)
    else:
        parts = [_verification_rows(path, plan, ItemStore(path), n_boot, level) for path, plan in zip(paths, plans)]
        long = pd.DataFrame([row for rows, _ in parts for row in rows])
        records = pd.concat([frame for _, frame in parts], ignore_index=True)
        name, table = "table2", _readable_table2(long)
    files = _write_tables(Path(tables_dir), name, table, long) if tables_dir is not None else []
    return ProtocolReport(name, table, long, records, files)
