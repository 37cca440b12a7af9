"""Experiments end to end on tiny data, the report, and the layer responses (Figure 7).

The default tests run a trimmed degradation experiment (two depths instead of four)
through the CLI; the `slow` ones run every experiment's own smoke budget unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import smoke
from torch import nn

import reslab
from reslab.cli import main
from reslab.data.synthetic import make_image_folder
from reslab.reproduce import experiments
from reslab.reproduce.responses import layer_responses, response_layers

FIGURES = {
    "degradation": ["curves.png"],
    "imagenet-degradation": ["curves.png"],
    "shortcuts": ["curves.png"],
    "shortcuts-cifar": ["curves.png"],
    "very-deep": ["curves.png"],
    "responses": ["responses.png"],
}


pytestmark = pytest.mark.usefixtures("cache")


@pytest.fixture(scope="session")
def data(tiny_cifar: Path) -> Path:
    return tiny_cifar


def check_report(folder: Path, figures: list[str]) -> str:
    text = (folder / "report.md").read_text()
    for name in figures:
        assert (folder / name).stat().st_size > 1000, name
        assert f"]({name})" in text, f"report.md does not link {name}"
    return text


# --- layer responses -----------------------------------------------------------------


def test_layer_responses_match_analytic_std() -> None:
    """A 3x3 identity conv, BN with known scale: the std is scale x the input's std."""
    c = 3
    net = nn.Sequential(
        nn.Conv2d(c, c, 3, padding=1, bias=False),
        nn.BatchNorm2d(c),
        nn.ReLU(),
        nn.Conv2d(c, c, 1, bias=False),
        nn.BatchNorm2d(c),  # 1x1: not a response
        nn.Conv2d(c, c, 3, padding=1, bias=False),
        nn.BatchNorm2d(c),
    )
    with torch.no_grad():
        ident = torch.zeros(c, c, 3, 3)
        ident[range(c), range(c), 1, 1] = 1.0
        net[0].weight.copy_(ident)
        bn = net[1]
        bn.running_mean.zero_()
        bn.running_var.fill_(1 - bn.eps)  # eval BN becomes y = weight * x + bias
        bn.weight.copy_(torch.tensor([1.0, 2.0, -3.0]))
        bn.bias.fill_(7.0)  # a shift changes no std
        net[6].weight.zero_()  # a constant output: std exactly 0
        net[6].bias.fill_(5.0)
    assert [name for name, _ in response_layers(net)] == ["1", "6"]
    # Channel k holds +-s_k in a checkerboard: population std s_k over (N, H, W).
    s = torch.tensor([0.5, 1.0, 2.0])
    sign = (torch.arange(6)[:, None] + torch.arange(6)[None, :]) % 2 * 2 - 1.0  # (6, 6)
    x = s[None, :, None, None] * sign  # (1, 3, 6, 6)
    batches = [(x.repeat(2, 1, 1, 1), None), x.repeat(3, 1, 1, 1)]  # pairs or bare tensors
    stds = layer_responses(net, batches)
    expected = (0.5 * 1 + 1.0 * 2 + 2.0 * 3) / 3  # mean over channels of |weight| x s
    assert stds[0] == pytest.approx(expected, rel=1e-6)  # float32 BN
    assert stds[1] == pytest.approx(0.0, abs=1e-9)
    assert net.training  # the train/eval mode is restored


@pytest.mark.parametrize(
    "name, count", [("resnet20", 19), ("plain20", 19), ("resnet18", 16), ("resnet50", 16)]
)
def test_response_layers_are_the_3x3_layers(name: str, count: int) -> None:
    # CIFAR: the 3x3 stem + 2 per block (6n + 1); ImageNet: no 7x7 stem, 2 per basic
    # block (2 x 8) or the one 3x3 of each bottleneck (16 blocks).
    assert len(response_layers(reslab.create_model(name))) == count


# --- experiments through the CLI -----------------------------------------------------


@pytest.fixture(scope="module")
def degradation(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A degradation experiment trimmed to depths 20 and 32, smoke budget, via the CLI."""
    out = tmp_path_factory.mktemp("degradation")
    exp = experiments.EXPERIMENTS["degradation"]
    runs = tuple((f"{k}{d}", None) for k in ("plain", "resnet") for d in (20, 32))
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(experiments.EXPERIMENTS, "degradation", dataclasses.replace(exp, runs=runs))
        mp.setenv("RESLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        torch.set_num_threads(1)
        argv = [
            *smoke("degradation", data, out),
            "--no-progress",
        ]
        assert main(argv) == 0
    return out


def test_degradation_report(degradation: Path) -> None:
    text = check_report(degradation, FIGURES["degradation"])
    meta = json.loads((degradation / "experiment.json").read_text())
    assert meta["provenance"]["command"] in text and meta["provenance"]["commit"] in text
    for model in ("plain20", "plain32", "resnet20", "resnet32"):
        assert f"| {model} | " in text
    assert "8.75 (test)" in text  # the paper's ResNet-20 beside ours
    assert "`smoke` budget" in text
    for run in (degradation / "runs").iterdir():  # what the paired rule compares nets by
        preds = json.loads((run / "predictions.json").read_text())
        n = json.loads((run / "summary.json").read_text())["final_eval"]["n"]
        assert len(preds["labels"]) == len(preds["center"]) == n
    assert "images, paired)" in text


def test_responses_and_report_regenerate(degradation: Path, data: Path, tmp_path: Path) -> None:
    resp = tmp_path / "responses"
    argv = [
        "reproduce",
        "responses",
        "--runs",
        str(degradation),
        "--data-dir",
        str(data),
        "--out",
        str(resp),
    ]
    assert main(argv) == 0
    stds = json.loads((resp / "responses.json").read_text())
    assert sorted(stds) == ["plain20-s0", "plain32-s0", "resnet20-s0", "resnet32-s0"]
    assert len(stds["resnet32-s0"]) == 31 and all(s > 0 for s in stds["plain20-s0"])
    check_report(resp, FIGURES["responses"])

    # `reslab report` rebuilds everything from the files alone and trains nothing.
    files = {p: p.stat().st_mtime_ns for p in degradation.rglob("*") if p.is_file()}
    for name in ["report.md", *FIGURES["degradation"]]:
        (degradation / name).unlink()
    assert main(["report", str(degradation), str(resp)]) == 0
    check_report(degradation, FIGURES["degradation"])
    after = {p: p.stat().st_mtime_ns for p in degradation.rglob("*") if p.is_file()}
    assert sorted(after) == sorted(files)
    assert all(after[p] == files[p] for p in files if p.suffix == ".pt")


# --- the reading follows the numbers -------------------------------------------------


def fake_run(
    folder: Path, model: str, train_err: float, val_err: float, seed: int = 0, shortcut=None
) -> None:
    d = folder / "runs" / experiments.run_name(model, shortcut, seed)
    d.mkdir(parents=True)
    (d / "config.json").write_text(
        json.dumps(
            {
                "model": model,
                "shortcut": shortcut,
                "seed": seed,
                "dataset": "cifar10",
                "batch_size": 128,
            }
        )
    )
    recs = [
        {"kind": "train", "step": s, "error": min(100.0, train_err + 50 / s), "loss": 1.0}
        for s in range(1, 201)
    ] + [
        {"kind": "eval", "split": "val", "step": s, "top1_error": val_err, "n": 5000}
        for s in (100, 200)
    ]
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    (d / "summary.json").write_text(json.dumps({"status": "finished", "step": 200}))


@pytest.mark.parametrize("degrades", [True, False])
def test_reading_claims_only_what_the_numbers_show(tmp_path: Path, degrades: bool) -> None:
    fake_run(tmp_path, "plain20", 10.0, 12.0)
    fake_run(tmp_path, "plain56", 20.0 if degrades else 5.0, 22.0 if degrades else 8.0)
    for seed, err in enumerate((8.0, 8.4)):
        fake_run(tmp_path, "resnet20", 6.0, err, seed)
        fake_run(tmp_path, "resnet56", 3.0, err - 1.5, seed)
    assert main(["report", str(tmp_path)]) == 0
    text = check_report(tmp_path, FIGURES["degradation"])  # no experiment.json: inferred
    assert "No experiment.json" in text and "chance" not in text
    degradation = "Degradation (plain56's training error above plain20's): "
    assert (
        (degradation + "**shown**") in text
        if degrades
        else (degradation + "**the opposite holds**") in text
    )
    # 1.5 points over 2 seeds on 5,000 images: inside the rule's interval either way
    assert "resnet56's validation error below resnet20's: **not resolved**" in text
    assert "(95%; 2+2 seeds, 5,000 images, unpaired)" in text and "verdict.compare" in text
    assert "8.20 ± 0.28 (n=2)" in text  # resnet20's val error over two seeds


def test_figure4_findings_against_the_seed_spread(tmp_path: Path) -> None:
    """Each of section 4.1's findings is judged by the rule: a gap inside its interval is
    "not resolved", one beyond it "shown"."""
    nets = {
        "plain18": (30.0, 40.0),
        "plain34": (40.0, 48.0),  # degradation: 10 points
        "resnet18": (25.0, 35.0),
        "resnet34": (24.8, 34.9),
    }  # within the seeds' spread
    for model, (tr, va) in nets.items():
        for seed, noise in enumerate((-0.5, 0.5)):
            shortcut = "A" if model.startswith("resnet") else None
            fake_run(tmp_path, model, tr + noise, va + noise, seed, shortcut=shortcut)
    (tmp_path / "experiment.json").write_text(json.dumps({"experiment": "imagenet-degradation"}))
    assert main(["report", str(tmp_path)]) == 0
    text = check_report(tmp_path, FIGURES["imagenet-degradation"])
    assert "Degradation (plain-34's training error above plain-18's): **shown**" in text
    assert "validation error below ResNet-18's: **not resolved**" in text
    assert "ResNet-18 ahead of plain-18 early in training (step ~50 of 200): **shown**" in text


# --- every experiment's own smoke budget, unchanged ----------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["degradation", "shortcuts", "very-deep", "imagenet-degradation"])
def test_smoke_experiment(name: str, data: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    if experiments.EXPERIMENTS[name].family == "imagenet":
        data = tmp_path / "folder"
        make_image_folder(data, ["a", "b", "c"], 40, 72, "train")
        make_image_folder(data, ["a", "b", "c"], 4, 72, "val", seed=1)
    out = tmp_path / "out"
    argv = [*smoke(name, data, out), "--no-progress"]
    assert main(argv) == 0
    check_report(out, FIGURES[name])
    planned = experiments.EXPERIMENTS[name].planned("smoke")
    assert len(list((out / "runs").glob("*/summary.json"))) == len(planned)
    if name == "degradation":
        assert main(["reproduce", "responses", "--data-dir", str(data), "--out", str(out)]) == 0
        assert len(json.loads((out / "responses.json").read_text())) == len(planned)
        check_report(out, FIGURES["degradation"] + FIGURES["responses"])


def test_very_deep_and_shortcuts_tables_from_files(tmp_path: Path) -> None:
    deep, cuts = tmp_path / "deep", tmp_path / "cuts"
    fake_run(deep, "resnet1202", 1.0, 9.0)
    summary = {
        "status": "finished",
        "step": 200,
        "iterations": 200,
        "wall_s": 3725,
        "peak_rss_mb": 4321.0,
    }
    (deep / "runs" / "resnet1202-s0" / "summary.json").write_text(json.dumps(summary))
    (deep / "experiment.json").write_text(json.dumps({"experiment": "very-deep"}))
    assert main(["report", str(deep)]) == 0
    text = check_report(deep, FIGURES["very-deep"])
    assert "| 4321 |" in text and "1:02:05" in text and "stayed finite" in text
    assert "cannot show that finding" in text and "first logged losses" in text
    for option, err in zip("ABC", (9.0, 9.1, 9.2)):
        for seed, noise in enumerate((-0.5, 0.5)):  # the seeds differ more than the options
            fake_run(cuts, "resnet32", 5.0, err + noise, seed, shortcut=option)
    (cuts / "runs" / "resnet32-C-s1" / "views.json").write_text(
        json.dumps({"ten-crop": {"top1_error": 8.0, "top5_error": 1.0, "n": 5000}})
    )
    assert main(["report", str(cuts)]) == 0  # no experiment.json: inferred from the runs
    text = check_report(cuts, FIGURES["shortcuts-cifar"])
    assert "ImageNet ResNet-34" in text and "**not resolved**" in text
    assert "8.00" in text and "centre crop" in text  # 10-crop beside the centre crop
    assert "**shown**:" not in text


# --- every committed report regenerates from the files committed beside it -----------

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
COMMITTED = sorted(p.parent for p in RESULTS.glob("*/experiment.json"))


def _tables(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


@pytest.mark.parametrize("folder", COMMITTED, ids=[p.name for p in COMMITTED])
def test_committed_report_regenerates(folder: Path, tmp_path: Path) -> None:
    """`reslab report` on a copy of each committed experiment writes the same tables."""
    copy = tmp_path / folder.name
    ignore = shutil.ignore_patterns("*.png", "report.md", "checkpoints")
    shutil.copytree(folder, copy, ignore=ignore)
    assert (copy / "runs").is_dir() or (copy / "responses.json").is_file(), (
        f"{folder}: its per-run records (runs/*/metrics.jsonl, or responses.json) are not committed"
    )
    assert main(["report", str(copy)]) == 0
    committed = (folder / "report.md").read_text()
    regenerated = (copy / "report.md").read_text()
    assert _tables(regenerated) == _tables(committed)
    assert regenerated == committed  # the prose too: `reslab report FOLDER` and commit


def test_an_experiments_own_budget_note_is_recorded(tmp_path: Path, monkeypatch) -> None:
    """very-deep's cpu budget (60 steps, 1 seed) is described as itself in experiment.json
    and so in its report, not by the CIFAR family's 2,000-step, 2-seed note."""
    monkeypatch.setattr(experiments, "check_run", lambda cfg: None)  # no 8 GB check here
    monkeypatch.setattr(experiments, "_run_plan", lambda *args, **kwargs: None)  # no training
    out = experiments.run_experiment(
        "very-deep", "cpu", str(tmp_path), tmp_path / "out", progress=False
    )
    meta = json.loads((out / "experiment.json").read_text())
    assert meta["budget_note"].startswith("60 steps of batch 128") and meta["seeds"] == 1
    assert experiments.BUDGETS["cifar"]["cpu"].note.startswith("2,000 steps")


def test_cli_passes_accumulation_to_the_plan(tmp_path: Path, monkeypatch) -> None:
    """`reslab reproduce ... --grad-accum-steps 8` reaches every run's config (the paper
    budget's batch of 256 as 8 x 32); without the flag nothing is overridden."""
    seen: list[dict] = []

    def fake_run(name, budget, data_dir, out, **kw):
        seen.append(kw)
        raise SystemExit(0)  # stop before the report

    monkeypatch.setattr(experiments, "run_experiment", fake_run)
    base = [
        "reproduce",
        "imagenet-degradation",
        "--budget",
        "paper",
        "--data-dir",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
    ]
    for extra, want in (([], None), (["--grad-accum-steps", "8"], 8)):
        with pytest.raises(SystemExit):
            main(base + extra)
        assert seen[-1].get("grad_accum_steps") == want


def test_a_plan_that_cannot_fit_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("RESLAB_MEMORY_LIMIT", "100M")  # less than any run needs
    out = tmp_path / "out"
    argv = [
        *smoke("shortcuts-cifar", tmp_path, out),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "resnet32" in err and "GiB" in err, err
    assert not out.exists()  # no experiment.json, no lock


def _finished_run(folder: Path, name: str, cfg: dict) -> None:
    """A finished run's records as an experiment leaves them, scored in its views but
    without its checkpoints (as committed records are): enough to reuse."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    records = [
        {"kind": "train", "step": 2, "loss": 2.0, "error": 80.0, "lr": 0.1},
        {"kind": "eval", "split": "val", "step": 2, "top1_error": 70.0, "n": 10},
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {"status": "finished", "step": 2, "iterations": 2, "final_eval": records[1]}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "views.json").write_text(json.dumps({"ten-crop": {"top1_error": 69.0, "n": 10}}))


def test_reuse_takes_the_same_runs_from_another_folder(tmp_path: Path, monkeypatch, capsys) -> None:
    """`--reuse DIR` links DIR's finished runs that this plan would train with the same
    settings (Table 3's option A is Figure 4's ResNet-34) and trains none of them again;
    a run whose settings differ is refused by name, before anything is written."""
    data, first, second = tmp_path / "data", tmp_path / "first", tmp_path / "second"
    exp = experiments.EXPERIMENTS["shortcuts"]
    budget = experiments.BUDGETS["imagenet"]["smoke"]
    settings = {"scale": budget.scale, **budget.overrides}
    names = []
    for run in exp.plan("smoke", 1):
        name = experiments.run_name(*run)
        cfg = experiments.run_config(
            exp.recipe, exp.dataset, str(data), first / "runs" / name, run, settings, False
        )
        _finished_run(first / "runs" / name, name, cfg.to_dict())
        names.append(name)
    assert names == ["resnet34-A-s0", "resnet34-B-s0", "resnet34-C-s0"]
    base = [
        "reproduce",
        "shortcuts",
        "--budget",
        "smoke",
        "--seeds",
        "1",
        "--data-dir",
        str(data),
        "--no-progress",
        "--out",
        str(second),
        "--reuse",
        str(first),
    ]

    def no_training(*args, **kwargs):
        raise AssertionError("a reused run was trained again")

    monkeypatch.setattr(experiments, "train", no_training)
    # The same settings but one: refused, naming the run and the setting; nothing made.
    cfg_path = first / "runs" / "resnet34-C-s0" / "config.json"
    saved = cfg_path.read_text()
    cfg_path.write_text(saved.replace('"weight_decay": 0.0001', '"weight_decay": 0.001'))
    assert main(base) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "resnet34-C-s0" in err and "weight_decay" in err, err
    assert not second.exists()

    cfg_path.write_text(saved)
    summary = first / "runs" / "resnet34-B-s0" / "summary.json"  # damaged: named, not skipped
    kept = summary.read_text()
    summary.write_text(kept[:10])
    assert main(base) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(summary) in err, err
    assert not second.exists()
    summary.write_text(kept)
    assert main(base) == 0
    meta = json.loads((second / "experiment.json").read_text())
    assert sorted(meta["reused"]) == names
    for name in names:
        a, b = first / "runs" / name / "metrics.jsonl", second / "runs" / name / "metrics.jsonl"
        assert a.exists() and a.read_bytes() == b.read_bytes()  # linked or copied; the source stays
    assert "Reused, not trained again" in (second / "report.md").read_text()


def test_a_gap_the_unpaired_rule_leaves_open_is_resolved_paired(tmp_path: Path) -> None:
    """Every run is scored on the same images: from errors alone the rule adds two
    binomial errors and leaves a 0.5-point gap open; with per-image predictions
    (predictions.json) it compares the nets image by image and resolves it."""
    for option, err in zip("ABC", (9.0, 8.5, 4.0)):
        for seed, noise in enumerate((-0.01, 0.01)):
            fake_run(tmp_path, "resnet32", 5.0, err + noise, seed, shortcut=option)
    assert main(["report", str(tmp_path)]) == 0
    lines = [x for x in (tmp_path / "report.md").read_text().splitlines() if "below option" in x]
    b_vs_a, c_vs_b, c_vs_a = lines
    assert "**not resolved**" in b_vs_a and "unpaired)" in b_vs_a
    assert "**shown**" in c_vs_a and "**shown**" in c_vs_b
    labels = [0] * 5000
    wrong = {"A": 450, "B": 425, "C": 200}  # B wrong on a subset of A's mistakes
    for option, k in wrong.items():
        for seed in (0, 1):
            preds = {"labels": labels, "center": [1] * k + [0] * (5000 - k)}
            run = tmp_path / "runs" / f"resnet32-{option}-s{seed}"
            (run / "predictions.json").write_text(json.dumps(preds))
    assert main(["report", str(tmp_path)]) == 0
    lines = [x for x in (tmp_path / "report.md").read_text().splitlines() if "below option" in x]
    assert "**shown**" in lines[0] and "5,000 images, paired)" in lines[0]


def test_report_names_each_invocations_machine(tmp_path: Path) -> None:
    """An experiment resumed on another machine says which machine ran which part."""
    fake_run(tmp_path, "resnet20", 5.0, 9.0)
    inv = {"command": "reslab reproduce degradation", "jobs": 1, "wall_s": 60.0}
    meta = {
        "experiment": "degradation",
        "started": "2026-11-30 04:00:00 UTC",
        "provenance": {
            "command": "reslab reproduce degradation",
            "commit": "bbb",
            "hardware": "AMD EPYC, 2 cores",
            "isa": ["avx2", "avx512f"],
        },
        "invocations": [
            {
                **inv,
                "commit": "aaa",
                "started": "2026-11-30 04:00:00 UTC",
                "hardware": "Intel(R) Xeon(R) Processor, 2 cores",
            },
            {
                **inv,
                "commit": "bbb",
                "started": "2026-12-03 20:00:00 UTC",
                "hardware": "AMD EPYC, 2 cores",
            },
        ],
    }
    (tmp_path / "experiment.json").write_text(json.dumps(meta))
    assert main(["report", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "- Hardware: AMD EPYC, 2 cores (avx2, avx512f); torch" in text
    assert "at `aaa`, 2026-11-30 04:00:00 UTC, 0:01:00, on Intel(R) Xeon(R) Processor" in text


@pytest.mark.parametrize("leaves", [True, False, "before the first log"])
def test_report_says_how_long_a_110_layer_net_held_the_warmup(tmp_path: Path, leaves) -> None:
    """The paper's 0.01 warm-up ends on the net's own training error: a net that never
    gets below 80% trains at 0.01 throughout, and the reading says so; one that left it
    before its first logged step is read against the config's warm-up lr, not that step's."""
    fake_run(tmp_path, "plain110", 89.0, 90.0)
    d = tmp_path / "runs" / "plain110-s0"
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(
        json.dumps({**cfg, "warmup_lr": 0.01, "warmup_until_error": 0.8})
    )
    recs = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    for r in recs:
        r["lr"] = 0.05 if leaves and (r["step"] >= 120 or isinstance(leaves, str)) else 0.01
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    assert main(["report", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    if leaves:
        step = 1 if isinstance(leaves, str) else 120
        assert (
            f"plain110-s0: left the paper's 110-layer warm-up (lr 0.01 until training error < 80%) by step {step}."
            in text
        )
    else:
        assert "plain110-s0: never left the paper's 110-layer warm-up" in text
        assert "trained at 0.01 throughout" in text


def test_resnet34_row_quotes_the_papers_number_for_its_own_shortcut_option(tmp_path: Path) -> None:
    """Figure 4's ResNet-34 uses option A: Table 2's 25.03%, not the registry's default
    option B (24.52%, Table 3)."""
    for model, shortcut, err in (
        ("plain18", None, 36.0),
        ("plain34", None, 67.0),
        ("resnet18", "A", 32.0),
        ("resnet34", "A", 36.0),
    ):
        fake_run(tmp_path, model, 40.0, err, 0, shortcut=shortcut)
    assert main(["report", str(tmp_path)]) == 0
    rows = {r.split("|")[1].strip(): r for r in _tables((tmp_path / "report.md").read_text())}
    assert "25.03 (val, 10-crop, option A)" in rows["resnet34-A"]
    assert "27.88 (val, 10-crop)" in rows["resnet18-A"]
    assert "28.54 (val, 10-crop)" in rows["plain34"]
