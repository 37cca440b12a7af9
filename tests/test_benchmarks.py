"""The benchmark's --quick mode runs every case end to end, so the script never rots."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench.jsonl"
    proc = subprocess.run(
        # every case but int8, which tests/test_quantize.py runs (it needs the [int8] extra)
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--out",
            str(out),
            "--cases",
            "cifar,folder,inference,memory,tta,train-eval",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    for heading in ("1. CIFAR training", "2. ImageFolder training", "3. inference", "4. peak RSS"):
        assert heading in text
    assert "failed" not in text, text
    rows = [json.loads(r) for r in out.read_text().splitlines()]
    assert all(r["cpu"] and "isa" in r for r in rows)  # the machine in every row
    cifar = [r for r in rows if r["case"] == "cifar"]
    from reslab.provenance import usable_isa

    bf16 = {"reslab --amp bf16"} if usable_isa() & {"amx_bf16", "avx512_bf16"} else set()
    assert {r["variant"] for r in cifar} == {"baseline", "reslab"} | bf16
    assert bf16 or "no bf16 rows" in text  # skipped with its reason where it would crawl
    assert all(r["images_per_s"] > 0 and r["train_gflop_per_image"] > 0 for r in cifar)
    folder = [r for r in rows if r["case"] == "folder"]
    assert {r["variant"] for r in folder} == {"baseline", "reslab", "reslab+cache"}
    assert all(r["build_s"] > 0 for r in rows if r["case"] == "folder-cache")
    assert all(r["peak_rss_mb"] > 0 for r in cifar + folder)  # memory beside every speed
    mem = {r["variant"]: r["peak_rss_mb"] for r in rows if r["case"] == "memory"}
    assert set(mem) == {"no-checkpointing", "checkpointing"}
    assert "7. peak memory of a run that trains" in text
    both = [r for r in rows if r["case"] == "train-eval"]  # --quick: train + eval rows only
    assert [(r["variant"], r["evaluate"]) for r in both] == [("peer", True), ("reslab", True)]
    assert all(r["peak_pss_gib"] > 0.1 and r["peak_rss_gib"] >= r["peak_pss_gib"] for r in both)
    assert all(len(r["pss_gib_each_at_peak"]) >= 1 and r["val_accuracy"] >= 0 for r in both)


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("cc") or shutil.which("gcc")), reason="fused_bn.py needs a C compiler"
)
def test_fused_bn_experiment_quick() -> None:
    """The fused batch-norm experiment builds, agrees with PyTorch and times both paths."""
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "fused_bn.py"),
            "--quick",
            "--models",
            "resnet20",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "largest relative error against PyTorch" in proc.stdout
    assert "resnet20: PyTorch ops" in proc.stdout and "ratio" in proc.stdout


@pytest.mark.slow
def test_compile_gain_runs_both_modes() -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "compile_gain.py"), "--models", "resnet20"]
    cmd += ["--pairs", "1", "--batch", "4", "--seconds", "0.2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["mode"] for r in rows] == ["eager", "compile"]
    assert all(r["images_per_s"] > 0 for r in rows)
    assert "resnet20: compile / eager = " in proc.stdout


@pytest.mark.parametrize(
    "script, args, message",
    [
        ("ab_trees.py", ["--old-set", "channels_last"], "is not KEY=JSON_VALUE"),
        ("ab_trees.py", ["--new-set", "channels_last=nope"], "is not KEY=JSON_VALUE"),
        ("ab_trees.py", ["--rounds", "0"], "--rounds must be at least 1"),
        ("ab_trees.py", ["--isa", "sse9"], "unknown ISA limit 'sse9'"),
        ("compile_gain.py", ["--isa", "sse9"], "unknown ISA limit 'sse9'"),
    ],
)
def test_benchmark_scripts_refuse_bad_options_in_one_line(script, args, message) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / script)]
    cmd += ["--old", "src", "--new", "src"] if script == "ab_trees.py" else []
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert message in proc.stderr.strip().splitlines()[-1]
