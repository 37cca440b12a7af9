"""Table 2's and 3's extra views of an experiment's finished networks (runs/NAME/views.json),
and every view's per-image predictions (runs/NAME/predictions.json): what the paired rule
of verdict.py compares two nets by."""

from __future__ import annotations

import json
from pathlib import Path

from ..evaluation.run import evaluate_run
from ..storage.files import write_json

CENTRE = "center"  # evaluate_run's name for the centre crop


def score_views(run_dir: Path, views: tuple[str, ...], data_dir: str) -> None:
    """The final network (last.pt) in each view on the validation split, once: errors
    into runs/NAME/views.json (the centre crop's is summary.json's final evaluation
    already), and each image's top-1 class in every view, the centre crop included,
    into runs/NAME/predictions.json ({"labels": [...], "center": [...], ...}, a few KB).
    A finished run whose checkpoint is at hand gets its predictions the next time
    `reslab reproduce` passes it."""
    last = run_dir / "checkpoints" / "last.pt"
    if not last.exists():
        return
    path, pred_path = run_dir / "views.json", run_dir / "predictions.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    preds = json.loads(pred_path.read_text()) if pred_path.exists() else {}
    batch = json.loads((run_dir / "config.json").read_text()).get("eval_batch_size", 100)
    for view in (CENTRE, *views):
        if view in preds and (view == CENTRE or view in done):
            continue
        ten = view == "ten-crop"  # 10 views an image: a tenth of the images a batch
        res = evaluate_run(
            last,
            split="val",
            ten_crop=ten,
            data_dir=data_dir,
            batch_size=max(1, batch // 10) if ten else batch,
            predictions=True,
        )
        if preds.get("labels", res["labels"]) != res["labels"]:
            raise ValueError(f"{run_dir}: the {view} view lists other images than the centre crop")
        preds["labels"], preds[view] = res["labels"], res["predictions"]
        if view != CENTRE:
            done[view] = {k: res[k] for k in ("top1_error", "top5_error", "n") if k in res}
            write_json(path, done)
        write_json(pred_path, preds, indent=None)
