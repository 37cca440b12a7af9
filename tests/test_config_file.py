"""`reslab train --config FILE`: a run from a saved config, flags on top (recipe < file <
flags), and one line naming the file for a bad one."""

from __future__ import annotations

import json
from pathlib import Path

import helpers
import pytest

from reslab.cli import main
from reslab.config import RECIPES, load_config

pytestmark = pytest.mark.usefixtures("cache")

TINY = [*helpers.TINY, "--device", "cpu", "--no-compile"]


def test_recipe_under_the_file_under_the_flags(tmp_path: Path) -> None:
    path = tmp_path / "few.json"
    path.write_text(json.dumps({"recipe": "cifar-fast", "lr_base": 0.3, "seed": 5}))
    cfg = load_config(path, seed=1)
    assert cfg.recipe == "cifar-fast" and cfg.schedule == RECIPES["cifar-fast"]["schedule"]
    assert cfg.lr_base == 0.3 and cfg.seed == 1  # the file over the recipe, a flag over both
    paper = load_config(path, "cifar-paper")  # --recipe: the recipe named, under the file
    assert paper.recipe == "cifar-paper" and paper.schedule == "step" and paper.lr_base == 0.3


def test_a_run_from_a_saved_config_records_the_result(
    tiny_cifar: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    first = tmp_path / "first"
    assert (
        main(["train", "--data-dir", str(tiny_cifar), *TINY, "--lr", "0.05", "--out", str(first)])
        == 0
    )
    second = tmp_path / "second"
    argv = ["train", "--config", str(first / "config.json"), "--seed", "1", "--out", str(second)]
    assert main(argv) == 0
    a = json.loads((first / "config.json").read_text())
    b = json.loads((second / "config.json").read_text())
    assert b["seed"] == 1 and b["out"] == str(second) and b["lr"] == 0.05
    assert {k: v for k, v in a.items() if k not in ("seed", "out")} == {
        k: v for k, v in b.items() if k not in ("seed", "out")
    }
    # Without --out, the file's own folder holds a run: a fresh one beside it.
    capsys.readouterr()
    assert main(["train", "--config", str(first / "config.json")]) == 0
    assert f"run folder: {first}-2" in capsys.readouterr().out


def test_bad_files_are_one_line_naming_the_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    files = {
        "missing.json": None,
        "text.json": "lr: 0.1",
        "list.json": "[1, 2]",
        "unknown.json": '{"lr": 0.1, "learning_rate": 0.1}',
        "value.json": '{"momentum": 1.5}',
        "recipe.json": '{"recipe": "nope"}',
        "binary.json": b"\xff\xfe\x00",
    }
    wants = {
        "missing.json": "cannot read config: No such file or directory",
        "text.json": "not a JSON config",
        "list.json": "holds a JSON list, not an object of settings",
        "unknown.json": "unknown config key(s) learning_rate",
        "value.json": "momentum must be in [0, 1), got 1.5",
        "recipe.json": "unknown recipe 'nope'",
        "binary.json": "not a JSON config",
    }
    for name, content in files.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content)
        out = tmp_path / f"run-{name}"
        code = main(["train", "--config", str(path), "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, (name, err)
        assert err.startswith(f"reslab train: error: {path}: ") and wants[name] in err, err
        assert not out.exists()
    # A flag does not excuse the file's own bad value: the file is fixed, not patched over.
    code = main(["train", "--config", str(tmp_path / "value.json"), "--momentum", "0.9"])
    assert code == 2 and "momentum must be" in capsys.readouterr().err
    code = main(["train", "--config", str(tmp_path / "list.json"), "--resume", str(tmp_path)])
    assert code == 2 and "--config starts a new run" in capsys.readouterr().err
