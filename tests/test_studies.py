"""The start-up study (studies/startup.py) end to end on tiny generated data."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from reslab.data.synthetic import make_image_folder

STUDY = Path(__file__).resolve().parents[1] / "studies" / "startup.py"
pytestmark = pytest.mark.usefixtures("cache")


def test_startup_study_runs_and_records(tiny_cifar: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("startup_study", STUDY)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    folder = make_image_folder(tmp_path / "nette", ["a", "b"], 48, 72)
    out = tmp_path / "out"
    study.main(["--cifar-dir", str(tiny_cifar), "--imagenette-dir", str(folder), "--out",
                str(out), "--steps", "5", "--warmup", "2", "--in-steps", "2", "--val-n", "16",
                "--limit", "160", "--threads", "1", "--workers", "0", "--batch", "32",
                "--in-batch", "16"])  # fmt: skip
    res = json.loads((out / "startup.json").read_text())
    init = res["init"]
    # The residual stream grows with depth at init; a plain net's features do not.
    assert init["reslab resnet110"]["feature_rms"] > 2 * init["reslab plain110"]["feature_rms"]
    assert init["reference resnet56"]["feature_rms"] == pytest.approx(
        init["reslab resnet56"]["feature_rms"], rel=0.2
    )  # same network, same init of the convs: same features
    assert len(res["cifar"]) == 3 and len(res["imagenet"]) == 4
    assert all(run["train"][-1]["step"] == 5 for run in res["cifar"].values())
    assert (out / "startup.png").stat().st_size > 1000
