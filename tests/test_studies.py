"""The start-up study (studies/startup.py) end to end on tiny generated data."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
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


def test_table6_chunk_script_trains_packs_and_skips_what_is_finished(tmp_path: Path) -> None:
    """studies/table6-paper.sh, the GPU chunk runner, on a CPU and tiny generated data: it
    trains the paper recipe, packs a finished run with best.pt only, and a second chunk
    leaves the finished run alone."""
    classes = [f"c{i}" for i in range(10)]
    make_image_folder(tmp_path / "src" / "cifar10-jpeg", classes, 6, 32)
    archive = tmp_path / "cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar10-jpeg", arcname="cifar10-jpeg")
    runs = tmp_path / "runs"
    env = {**os.environ, "CIFAR": str(archive), "RUNS": str(runs), "NETS": "resnet20",
           "FAST": "", "SECONDS_LEFT": "300",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "EXTRA": "--device cpu --threads 1 --workers 0 --iterations 4 --val-size 20 "
                    "--batch-size 16 --eval-every 2 --log-every 1 --checkpoint-every 2 "
                    "--eval-batch-size 20"}  # fmt: skip
    script = STUDY.parent / "table6-paper.sh"
    for chunk in (1, 2):  # each chunk packs into an empty folder, as the device's $OUT
        pack = tmp_path / f"pack{chunk}"
        pack.mkdir()
        env["PACK"] = str(pack)
        done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                              cwd=STUDY.parents[1], timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        summary = json.loads((runs / "resnet20-s0" / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["step"] == 4
        if chunk == 1:
            metrics = (runs / "resnet20-s0" / "metrics.jsonl").read_text()
        else:  # the finished run was not trained again
            assert f"{runs}/resnet20-s0: finished" in done.stdout
            assert (runs / "resnet20-s0" / "metrics.jsonl").read_text() == metrics
    cfg = json.loads((runs / "resnet20-s0" / "config.json").read_text())
    assert (cfg["recipe"], cfg["amp"], cfg["model"]) == ("cifar-paper", "bf16", "resnet20")
    with tarfile.open(pack / "resnet20-s0.tar.gz") as tar:
        names = {Path(n).name for n in tar.getnames()}
    assert {"best.pt", "metrics.jsonl", "summary.json", "config.json"} <= names
    assert not names & {"last.pt", "previous.pt"}


@pytest.mark.parametrize("bad", ["CIFAR", "SECONDS_LEFT", "PACK"])
def test_table6_chunk_script_refuses_bad_settings_in_one_line(tmp_path: Path, bad: str) -> None:
    """A missing archive, a time limit that is not a number, or a pack folder that holds
    files: one line naming the setting, exit 2, nothing made or written over."""
    archive = tmp_path / "cifar.tar.gz"
    archive.write_bytes(b"")
    kept = tmp_path / "pack" / "mine.tar.gz"
    kept.parent.mkdir()
    kept.write_bytes(b"a user's file")
    env = {**os.environ, "CIFAR": str(archive), "RUNS": str(tmp_path / "runs"),
           "SECONDS_LEFT": "60", "PACK": ""}  # fmt: skip
    env[bad] = {"CIFAR": str(tmp_path / "missing.tar.gz"), "SECONDS_LEFT": "ten",
                "PACK": str(kept.parent)}[bad]  # fmt: skip
    done = subprocess.run(["bash", str(STUDY.parent / "table6-paper.sh")], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    err = done.stderr.strip()
    assert "\n" not in err and err.startswith(f"table6-paper.sh: {bad}="), err
    assert not (tmp_path / "runs").exists() and kept.read_bytes() == b"a user's file"
