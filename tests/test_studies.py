"""The start-up study (studies/startup.py) end to end on tiny generated data."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from reslab.config import make_config
from reslab.data.synthetic import make_image_folder
from reslab.reproduce import experiments
from reslab.training import plan as plan_module
from reslab.training.loop import train
from reslab.training.plan import check_run

STUDY = Path(__file__).resolve().parents[1] / "studies" / "startup.py"
pytestmark = pytest.mark.usefixtures("cache")


def test_startup_study_runs_and_records(tiny_cifar: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("startup_study", STUDY)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    folder = make_image_folder(tmp_path / "nette", ["a", "b"], 48, 72)
    out = tmp_path / "out"
    study.main(
        [
            "--cifar-dir",
            str(tiny_cifar),
            "--imagenette-dir",
            str(folder),
            "--out",
            str(out),
            "--steps",
            "5",
            "--warmup",
            "2",
            "--in-steps",
            "2",
            "--val-n",
            "16",
            "--limit",
            "160",
            "--threads",
            "1",
            "--workers",
            "0",
            "--batch",
            "32",
            "--in-batch",
            "16",
        ]
    )
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
    env = {
        **os.environ,
        "CIFAR": str(archive),
        "RUNS": str(runs),
        "NETS": "resnet20",
        "FAST": "",
        "SECONDS_LEFT": "300",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "EXTRA": "--device cpu --threads 1 --workers 0 --iterations 4 --val-size 20 "
        "--batch-size 16 --eval-every 2 --log-every 1 --checkpoint-every 2 "
        "--eval-batch-size 20",
    }
    script = STUDY.parent / "table6-paper.sh"
    for chunk in (1, 2):  # each chunk packs into an empty folder, as the device's $OUT
        pack = tmp_path / f"pack{chunk}"
        pack.mkdir()
        env["PACK"] = str(pack)
        done = subprocess.run(
            ["bash", str(script)],
            env=env,
            capture_output=True,
            text=True,
            cwd=STUDY.parents[1],
            timeout=300,
        )
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
    env = {
        **os.environ,
        "CIFAR": str(archive),
        "RUNS": str(tmp_path / "runs"),
        "SECONDS_LEFT": "60",
        "PACK": "",
    }
    env[bad] = {
        "CIFAR": str(tmp_path / "missing.tar.gz"),
        "SECONDS_LEFT": "ten",
        "PACK": str(kept.parent),
    }[bad]
    done = subprocess.run(
        ["bash", str(STUDY.parent / "table6-paper.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    err = done.stderr.strip()
    assert "\n" not in err and err.startswith(f"table6-paper.sh: {bad}="), err
    assert not (tmp_path / "runs").exists() and kept.read_bytes() == b"a user's file"


# --- studies/gpu-budgets.sh: the `gpu` budgets in chunks on a lent GPU (issue 36) --------

GPU_SCRIPT = STUDY.parent / "gpu-budgets.sh"


@pytest.mark.parametrize("name", sorted(experiments.EXPERIMENTS))
def test_every_gpu_budget_run_passes_the_config_checks(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each planned run of each experiment's `gpu` budget resolves into a config that
    make_config and check_run accept (model, schedule, memory), as reproduce checks them.
    (Here, without a GPU, the check that CUDA graphs have one is left out.)"""
    monkeypatch.setattr(plan_module, "check_cuda_graphs", lambda *a: None)
    exp = experiments.EXPERIMENTS[name]
    budget = experiments.BUDGETS[exp.family]["gpu"]
    own = dict(exp.settings.get("gpu", {}))
    seeds, note = own.pop("seeds", budget.seeds), own.pop("note", budget.note)
    settings = {"scale": budget.scale, **budget.overrides, **own}
    plan = exp.plan("gpu", seeds)
    assert plan and "bf16" in note
    for run in plan:
        cfg = experiments.run_config(
            exp.recipe,
            exp.dataset,
            str(tmp_path),
            tmp_path / experiments.run_name(*run),
            run,
            settings,
            False,
        )
        check_run(cfg)
        assert cfg.amp == "bf16"


def test_the_gpu_budgets_are_the_issues() -> None:
    """Figure 4 at 128 px, ~41 epochs, the step schedule /10 twice, 2 seeds, residual nets
    first; Table 3's options; Table 6's remainder at the paper's 64k steps, seed 0."""
    fig4 = experiments.EXPERIMENTS["imagenet-degradation"].plan("gpu", 2)
    assert fig4[:2] == [("resnet18", "A", 0), ("resnet34", "A", 0)] and len(fig4) == 8
    s = experiments.BUDGETS["imagenet"]["gpu"].overrides
    assert s["image_size"] >= 128 and s["schedule"] == "step" and len(s["milestones"]) == 2
    assert s["iterations"] * s["batch_size"] / (9469 - s["val_size"]) >= 40  # epochs
    cuts = experiments.EXPERIMENTS["shortcuts"].plan("gpu", 2)
    assert {sc for _, sc, _ in cuts} == {"A", "B", "C"}
    deg = experiments.EXPERIMENTS["degradation"].plan("gpu", 1)
    assert [m for m, _, _ in deg] == ["resnet44", "resnet56", "resnet110", "plain20", "plain56"]
    cfg = make_config("cifar-paper", **experiments.BUDGETS["cifar"]["gpu"].overrides)
    assert (cfg.iterations, tuple(cfg.milestones), cfg.cuda_graphs) == (
        64_000,
        (32_000, 48_000),
        True,
    )


def _gpu_chunk(env: dict[str, str], pack: Path | None, **more: str) -> subprocess.CompletedProcess:
    if pack is not None:
        pack.mkdir()
    env = {**env, "PACK": str(pack or ""), **more}
    done = subprocess.run(
        ["bash", str(GPU_SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        cwd=STUDY.parents[1],
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _unpack(pack: Path, keep: Path, carry: Path) -> None:
    done = subprocess.run(
        ["bash", str(GPU_SCRIPT), "unpack", str(pack), str(keep), str(carry)],
        capture_output=True,
        text=True,
        cwd=STUDY.parents[1],
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def gpu_env(tmp_path: Path) -> dict[str, str]:
    """The carried data as `prepare` lays it out, tiny: imagenette-144.tar, the CIFAR archive."""
    data = tmp_path / "carry"
    data.mkdir()
    make_image_folder(tmp_path / "src" / "imagenette", ["a", "b", "c"], 40, 72)
    with tarfile.open(data / "imagenette-144.tar", "w") as tar:
        tar.add(tmp_path / "src" / "imagenette", arcname="imagenette")
    make_image_folder(tmp_path / "src" / "cifar10-jpeg", [f"c{i}" for i in range(10)], 6, 32)
    with tarfile.open(data / "cifar10-train-jpeg.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar10-jpeg", arcname="cifar10-jpeg")
    return {
        **os.environ,
        "DATA": str(data),
        "RUNS": str(data / "runs"),
        "BUDGET": "smoke",
        "SECONDS_LEFT": "500",
        "FLAGS": "--threads 1 --seeds 1",
        "JOBS_IMAGENETTE": "1",
        "JOBS_CIFAR": "1",
        "DATA_ROOT": str(tmp_path / "extracted"),
        "RESLAB_CACHE": str(tmp_path / "cache"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }


@pytest.mark.slow  # trains 7 / 8 tiny runs: ~30-110 s on 2 cores
def test_gpu_chunks_run_in_order_pack_what_travels_and_leave_finished_runs(
    gpu_env: dict[str, str], tmp_path: Path
) -> None:
    """Figure 4's stage, then Table 3's with option A linked from it; an Imagenette net's
    checkpoint (over 15 MiB) stays behind once the run is scored in 10 crops; the next
    chunk, from what the first packed, trains nothing again."""
    env = {**gpu_env, "STAGES": "imagenet-degradation shortcuts"}
    first = _gpu_chunk(env, tmp_path / "pack1")
    assert "imagenet-degradation: exit 0" in first.stdout and "shortcuts: exit 0" in first.stdout
    keep, carry = tmp_path / "keep", tmp_path / "next"
    _unpack(tmp_path / "pack1", keep, carry)
    fig4, cuts = keep / "imagenet-degradation-smoke", keep / "shortcuts-smoke"
    for run in [*fig4.glob("runs/*"), *cuts.glob("runs/*")]:
        assert json.loads((run / "summary.json").read_text())["status"] == "finished", run
        assert (run / "views.json").exists() and not (run / "checkpoints").exists()
    assert len(list(fig4.glob("runs/*"))) == 4 and len(list(cuts.glob("runs/*"))) == 3
    assert "resnet34-A-s0" in json.loads((cuts / "experiment.json").read_text())["reused"]
    assert (fig4 / "report.md").exists() and list((keep / "logs").glob("shortcuts-*.log"))
    before = (fig4 / "runs" / "plain18-s0" / "metrics.jsonl").read_text()
    carried_logs = set((carry / "logs").iterdir())
    second = _gpu_chunk({**env, "RUNS": str(carry)}, tmp_path / "pack2")
    new_logs = set((carry / "logs").iterdir()) - carried_logs
    assert new_logs and not any("] training " in log.read_text() for log in new_logs)
    assert (
        carry / "imagenet-degradation-smoke" / "runs" / "plain18-s0" / "metrics.jsonl"
    ).read_text() == before
    assert "shortcuts: exit 0" in second.stdout


@pytest.mark.slow  # trains 7 / 8 tiny runs: ~30-110 s on 2 cores
def test_a_cifar_run_stopped_in_one_chunk_resumes_in_the_next(
    gpu_env: dict[str, str], tmp_path: Path
) -> None:
    """A CIFAR net stopped mid-run (as a chunk's time limit stops it) travels with its
    last.pt, and the next chunk resumes it from there to the end."""
    carry = Path(gpu_env["RUNS"])
    exp = experiments.EXPERIMENTS["degradation"]
    budget = experiments.BUDGETS["cifar"]["smoke"]
    settings = {"scale": budget.scale, **budget.overrides, "threads": 1}
    data = tmp_path / "extracted"
    data.mkdir()
    with tarfile.open(Path(gpu_env["DATA"]) / "cifar10-train-jpeg.tar.gz") as tar:
        tar.extractall(data, filter="data")
    run = carry / "degradation-smoke" / "runs" / "plain20-s0"
    cfg = experiments.run_config(
        exp.recipe,
        exp.dataset,
        str(data / "cifar10-jpeg"),
        run,
        ("plain20", None, 0),
        settings,
        False,
    )
    assert train(cfg, stop_after=2).status == "stopped"
    _gpu_chunk({**gpu_env, "STAGES": ""}, tmp_path / "pack1")  # packs only
    keep, nxt = tmp_path / "keep", tmp_path / "next"
    _unpack(tmp_path / "pack1", keep, nxt)
    assert (nxt / "degradation-smoke" / "runs" / "plain20-s0" / "checkpoints" / "last.pt").exists()
    done = _gpu_chunk(
        {
            **gpu_env,
            "RUNS": str(nxt),
            "STAGES": "degradation",
            "DATA_ROOT": str(tmp_path / "elsewhere"),
        },
        tmp_path / "pack2",
    )
    assert "degradation: exit 0" in done.stdout, done.stdout
    log = next((nxt / "logs").glob("degradation-*.log")).read_text()
    assert "resuming plain20-s0" in log
    summary = json.loads(
        (nxt / "degradation-smoke" / "runs" / "plain20-s0" / "summary.json").read_text()
    )
    assert summary["status"] == "finished" and summary["step"] == 4
    _unpack(tmp_path / "pack2", keep, nxt)  # finished: best.pt kept here, nothing carried
    assert (keep / "degradation-smoke" / "runs" / "plain20-s0" / "checkpoints" / "best.pt").exists()
    assert not list(nxt.glob("degradation-smoke/runs/*/checkpoints/*.pt"))


@pytest.mark.parametrize("bad", ["DATA", "SECONDS_LEFT", "PACK", "STAGES", "JOBS_CIFAR"])
def test_gpu_chunk_script_refuses_bad_settings_in_one_line(
    gpu_env: dict[str, str], tmp_path: Path, bad: str
) -> None:
    kept = tmp_path / "pack" / "mine"
    kept.parent.mkdir()
    kept.write_bytes(b"a user's file")
    env = {
        **gpu_env,
        "RUNS": str(tmp_path / "runs"),
        bad: {
            "DATA": str(tmp_path / "missing"),
            "SECONDS_LEFT": "ten",
            "PACK": str(kept.parent),
            "STAGES": "degradation figure9",
            "JOBS_CIFAR": "0",
        }[bad],
    }
    done = subprocess.run(
        ["bash", str(GPU_SCRIPT)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    err = done.stderr.strip()
    assert "\n" not in err and err.startswith("gpu-budgets.sh: "), err
    assert bad.split("_")[0] in err
    assert not (tmp_path / "runs").exists() and kept.read_bytes() == b"a user's file"


def test_gpu_pack_keeps_only_what_can_travel_and_be_resumed(
    gpu_env: dict[str, str], tmp_path: Path
) -> None:
    """The packing rule on made-up run folders (no training): a checkpoint over 15 MiB never
    travels; an Imagenette run comes back once scored in 10 crops, else not at all (it starts
    over); an unfinished CIFAR run comes back with last.pt; a finished one with best.pt."""
    runs = Path(gpu_env["RUNS"])

    def run(exp: str, name: str, status: str, ckpt_mib: int, views: bool = False) -> None:
        folder = runs / exp / "runs" / name
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({"status": status}, indent=2))
        (folder / "metrics.jsonl").write_text("{}\n")
        for ckpt in ("last.pt", "best.pt"):
            with open(folder / "checkpoints" / ckpt, "wb") as f:
                f.truncate(ckpt_mib << 20)
        (folder / "checkpoints" / "previous.pt").write_bytes(b"x")
        if views:
            (folder / "views.json").write_text("{}")
        (runs / exp / "experiment.json").write_text("{}")

    run("imagenet-degradation-gpu", "resnet18-A-s0", "finished", 90, views=True)
    run("imagenet-degradation-gpu", "resnet34-A-s0", "finished", 170)  # not yet scored
    run("imagenet-degradation-gpu", "plain18-s0", "interrupted", 90)
    run("degradation-gpu", "resnet110-s0", "interrupted", 14)
    run("degradation-gpu", "resnet44-s0", "finished", 5)
    done = _gpu_chunk({**gpu_env, "STAGES": ""}, tmp_path / "pack")
    assert done.stdout.count("not packed, starts over next time") == 2
    with tarfile.open(
        fileobj=io.BytesIO(b"".join(p.read_bytes() for p in sorted((tmp_path / "pack").iterdir())))
    ) as tar:
        names = set(tar.getnames())
    assert all(p.stat().st_size <= 16 << 20 for p in (tmp_path / "pack").iterdir())
    fig4, deg = "imagenet-degradation-gpu/runs/", "degradation-gpu/runs/"
    assert f"{fig4}resnet18-A-s0/views.json" in names
    assert not any(n.startswith((f"{fig4}resnet34-A-s0", f"{fig4}plain18-s0")) for n in names)
    assert not any(
        n.endswith(("previous.pt", ".lock")) or (n.startswith(fig4) and n.endswith(".pt"))
        for n in names
    )
    assert {
        f"{deg}resnet110-s0/checkpoints/last.pt",
        f"{deg}resnet44-s0/checkpoints/best.pt",
    } <= names
    assert f"{deg}resnet44-s0/checkpoints/last.pt" not in names
    assert "degradation-gpu/experiment.json" in names
