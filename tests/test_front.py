"""README's results table is exactly what `reslab results-table docs/results` generates
from the committed records, so no number in it can drift from its record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reslab.cli import main
from reslab.reproduce.front import BEGIN, END, readme_table, results_table

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
        ignore=shutil.ignore_patterns("*.png", "*-s2"),  # the test adds its own seed 2
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


def test_one_seed_a_side_is_said(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """With one seed of each net the interval holds only the images' noise: the verdict
    cell says the seeds' spread is not in it."""
    scores = [
        {"weights": w, "top1_error_pct": e, "images": 10_000} for w, e in (("x", 14), ("y", 12))
    ]
    (tmp_path / "test.json").write_text(json.dumps({"results": scores}))
    row = {"item": "y below x", "paper": "-", "record": "test.json", "kind": "withheld"}
    row |= {"a": "x", "b": "y", "data": "d", "budget": "b", "machine": "m"}
    (tmp_path / "index.json").write_text(json.dumps({"rows": [row]}))
    assert main(["results-table", str(tmp_path)]) == 0
    assert (
        "shown: +2.0 ± 0.9 (unpaired, 10,000 images, 1 seed a side: seed spread not measured)"
        in (capsys.readouterr().out)
    )


def test_the_readme_is_never_written_through_a_link(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """--readme naming a symbolic link is one line and exit 2; the file it points to is
    untouched. A real README gets the table by a rename, not by truncating it."""
    victim = tmp_path / "victim.md"
    victim.write_text(f"mine\n{BEGIN}\nold\n{END}\n")
    link = tmp_path / "README.md"
    link.symlink_to(victim)
    results = ROOT / "docs" / "results"
    before = victim.read_bytes()
    assert main(["results-table", str(results), "--readme", str(link)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "symbolic link" in err, err
    assert victim.read_bytes() == before
    inode = victim.stat().st_ino
    assert main(["results-table", str(results), "--readme", str(victim)]) == 0
    assert victim.stat().st_ino != inode and readme_table(victim) == results_table(results)
    assert victim.read_text().startswith("mine\n")
