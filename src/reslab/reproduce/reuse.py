"""`reslab reproduce ... --reuse DIR`: take finished runs from another experiment folder
instead of training them again, where that folder trained the very same run.

Table 3's option-A ResNet-34 at the cpu budget is Figure 4's ResNet-34 (same recipe,
settings and seeds): `reproduce shortcuts --reuse IMAGENET_DEGRADATION_FOLDER` trains
only options B and C. A run is taken only if it finished and its config.json matches
what this plan would train in every setting but where it lives and how it reports
(`IGNORED`); a run that differs is refused, naming the setting, since the user asked
for it by name. Its files are hard-linked (copied across file systems), never moved:
the source folder stays as it was.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from .runs import read_json

# Where a run lives and how it reports, not what it computes.
IGNORED = frozenset({"out", "data_dir", "progress", "threads", "tensorboard"})


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def matching_runs(source: str | Path, out: Path, planned: dict[str, dict[str, Any]]) -> list[str]:
    """The runs of `planned` (run name -> its config as config.json would hold it) that
    SOURCE/runs holds finished with the same settings and OUT does not hold yet. A
    finished run whose settings differ is refused: the user asked for it by name."""
    source = Path(source)
    if not (source / "runs").is_dir():
        raise FileNotFoundError(f"--reuse {source}: no runs/ folder there (an experiment folder?)")
    if out.exists() and source.resolve() == out.resolve():
        raise ValueError(f"--reuse {source}: that is --out itself")
    names = []
    for name, want in planned.items():
        src = source / "runs" / name
        summary = read_json(src / "summary.json")  # a damaged file is named
        if (
            (out / "runs" / name).exists()
            or not isinstance(summary, dict)
            or summary.get("status") != "finished"
        ):
            continue
        if not (src / "checkpoints" / "last.pt").is_file() and not (src / "views.json").is_file():
            raise ValueError(
                f"--reuse {src}: finished, but its checkpoints are gone and it was never "
                "scored in the experiment's views (no views.json); it cannot be used"
            )
        have = read_json(src / "config.json")
        if not isinstance(have, dict):
            raise ValueError(f"--reuse {src}: no readable config.json")
        want = json.loads(json.dumps(want))  # as config.json holds it: tuples are lists
        for key in sorted(set(want) - IGNORED):
            if have.get(key) != want[key]:
                raise ValueError(
                    f"--reuse {src}: its {key} is {have.get(key)!r}, this "
                    f"experiment trains {want[key]!r}; not the same run"
                )
        names.append(name)
    return names


def link_runs(source: str | Path, out: Path, names: list[str]) -> dict[str, str]:
    """Copy SOURCE/runs/NAME to OUT/runs/NAME for each name (hard links where the file
    system allows); returns {run name: the folder it came from}."""
    taken = {}
    for name in names:
        src, dst = Path(source) / "runs" / name, out / "runs" / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{name}.{os.getpid()}.reuse")  # a kill mid-copy leaves only this
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(
            src, tmp, copy_function=_link_or_copy, ignore=shutil.ignore_patterns(".lock", ".*.tmp")
        )
        tmp.rename(dst)
        taken[name] = str(src)
    return taken
