"""What a run saves: best.pt (the weights and how to use them) and last.pt (all a resume
needs as well). The file format itself is reslab.storage.checkpoint's."""

from __future__ import annotations

import os
from typing import Any

from ..errors import ReslabError
from ..storage import checkpoint as ckpt_io
from ..storage.files import DiskFull
from .prepare import Run
from .runstate import rng_state


def payload(run: Run, resumable: bool) -> dict[str, Any]:
    """The checkpoint of `run` at its current step (see storage/checkpoint.py for keys)."""
    out = {
        "format": ckpt_io.FORMAT,
        "version": ckpt_io.VERSION,
        "model": run.eval_model.state_dict(),
        "model_args": run.model_args,
        "classes": run.data.classes,
        "normalization": run.data.normalization,
        "image_size": run.data.image_size,
        "config": run.cfg.to_dict(),
        "versions": ckpt_io.versions(),
        "step": run.step,
        "best": run.best_error,
    }
    if not resumable:
        return out
    if run.ema is not None:
        out.update(train_model=run.model.state_dict(), ema_updates=run.ema.updates)
    out.update(
        optimizer=run.optimizer.state_dict(),
        scaler=run.scaler.state_dict(),
        schedule=run.schedule.to_dict(),
        rng=rng_state(),
        interval=dict(run.acc),
        epoch=run.step // run.per_epoch,
        wall=run.wall(),
        batch_in_epoch=run.step % run.per_epoch,
    )
    return out


def save(run: Run, kind: str) -> None:
    """kind "best": best.pt; "last": last.pt, the previous one kept as previous.pt (a
    resume falls back to it if last.pt is damaged). Only the main process writes."""
    if not run.main:
        return
    if not all(
        bool(t.isfinite().all())
        for t in run.eval_model.state_dict().values()
        if t.is_floating_point()
    ):
        # Caught by the loop, which ends the run as diverged; the finite files stay.
        raise NonFiniteWeights("the weights became NaN or infinite")
    folder = run.run_dir / "checkpoints"
    if kind == "best":
        ckpt_io.atomic_save(payload(run, resumable=False), folder / ckpt_io.BEST)
        return
    data = payload(run, resumable=True)
    last = folder / ckpt_io.LAST
    if last.exists():
        os.replace(last, folder / ckpt_io.PREVIOUS)
    try:
        ckpt_io.atomic_save(data, last)
    except DiskFull as e:  # previous.pt holds the last good state: say how to go on
        if not (folder / ckpt_io.PREVIOUS).exists():
            raise
        raise DiskFull(
            e.errno,
            f"{e} as {ckpt_io.PREVIOUS}; free some space, then `reslab "
            f"train --resume {run.run_dir}` continues from it",
        ) from None
    run.saved_step = run.step


class NonFiniteWeights(ReslabError, RuntimeError):
    """A checkpoint would have held NaN or infinite weights; none was written."""
