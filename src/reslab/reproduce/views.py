"""Table 2's and 3's extra views of an experiment's finished networks: runs/NAME/views.json."""

from __future__ import annotations

import json
from pathlib import Path

from ..evaluation.run import evaluate_run
from ..storage.files import write_json


def score_views(run_dir: Path, views: tuple[str, ...], data_dir: str) -> None:
    """The final network (last.pt) in each view on the validation split, once, into
    runs/NAME/views.json (the centre crop is summary.json's final evaluation already)."""
    path = run_dir / "views.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    last = run_dir / "checkpoints" / "last.pt"
    todo = [v for v in views if v not in done]
    if not todo or not last.exists():
        return
    batch = json.loads((run_dir / "config.json").read_text()).get("eval_batch_size", 100)
    for view in todo:  # 10 views an image: a tenth of the images a batch
        res = evaluate_run(last, split="val", ten_crop=view == "ten-crop", data_dir=data_dir,
                           batch_size=max(1, batch // 10))  # fmt: skip
        done[view] = {k: res[k] for k in ("top1_error", "top5_error", "n") if k in res}
    write_json(path, done)
