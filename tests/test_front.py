"""README's results table is exactly what `reslab results-table docs/results` generates
from the committed records, so no number in it can drift from its record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reslab.cli import main
from reslab.reproduce.front import readme_table, results_table

ROOT = Path(__file__).resolve().parents[1]


def test_readme_table_is_generated_from_the_records() -> None:
    assert readme_table(ROOT / "README.md") == results_table(ROOT / "docs" / "results")


def test_readme_is_a_front_door() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_the_table_follows_the_records(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A third seed added to an experiment changes its rows; a row naming a net that is
    not there is one line and exit 2."""
    results = tmp_path / "results"
    shutil.copytree(
        ROOT / "docs" / "results" / "shortcuts-cpu",
        results / "shortcuts-cpu",
        ignore=shutil.ignore_patterns("*.png"),
    )
    index = json.loads((ROOT / "docs" / "results" / "index.json").read_text())
    rows = [r for r in index["rows"] if r["record"].startswith("shortcuts-cpu")]
    (results / "index.json").write_text(json.dumps({"rows": rows}))
    assert main(["results-table", str(results)]) == 0
    assert "seeds 0, 1 |" in capsys.readouterr().out
    for option in "BC":
        src = results / "shortcuts-cpu" / "runs" / f"resnet34-{option}-s1"
        shutil.copytree(src, src.with_name(f"resnet34-{option}-s2"))
    cfg = src.with_name("resnet34-A-s1")
    shutil.copytree(cfg, cfg.with_name("resnet34-A-s2"))
    for option in "ABC":
        c = results / "shortcuts-cpu" / "runs" / f"resnet34-{option}-s2" / "config.json"
        c.write_text(json.dumps({**json.loads(c.read_text()), "seed": 2}))
    assert main(["results-table", str(results)]) == 0
    out = capsys.readouterr().out
    assert "seeds 0, 1, 2 |" in out and "3+3 seeds" not in out
    rows[0]["b"] = "resnet34-Z"
    (results / "index.json").write_text(json.dumps({"rows": rows}))
    assert main(["results-table", str(results)]) == 2
    assert "resnet34-Z" in capsys.readouterr().err
