"""Named weights: shipping a run, loading by name, checksums, the shipped networks' cards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import reslab
from reslab import zoo
from reslab.config import make_config
from reslab.evaluation import evaluate_run
from reslab.inference import load_model
from reslab.training.loop import train
from reslab.zoo.publish import ship

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shipped(tiny_cifar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run, shipped as "tiny:resnet20" into a user weights folder."""
    root = tmp_path_factory.mktemp("zoo")
    cfg = make_config(
        "cifar-paper",
        model="resnet20",
        model_args={"n": 1},
        data_dir=str(tiny_cifar),
        out=str(root / "run"),
        batch_size=32,
        val_size=64,
        iterations=6,
        milestones=(),
        log_every=2,
        eval_every=3,
        checkpoint_every=3,
        eval_batch_size=64,
        progress=False,
        threads=1,
    )
    train(cfg)
    ship(root / "run", "tiny", root / "weights")
    return root


def test_ship_writes_weights_card_and_manifest(shipped: Path) -> None:
    folder = shipped / "weights"
    entry = json.loads((folder / "manifest.json").read_text())["tiny:resnet20"]
    evals = [json.loads(r) for r in (shipped / "run" / "metrics.jsonl").read_text().splitlines()]
    best = min((r for r in evals if r["kind"] == "eval"), key=lambda r: r["top1_error"])
    assert entry["val_top1_error"] == round(best["top1_error"], 2)  # from the run, not typed
    assert entry["sha256"] == zoo.file_digest(folder / entry["file"], "sha256")
    card = (folder / entry["card"]).read_text()
    assert f"{entry['val_top1_error']:.2f}%" in card and entry["sha256"] in card
    # a plain `train` run records who made it, and the card names that command and commit
    prov = json.loads((shipped / "run" / "summary.json").read_text())["provenance"]
    assert prov["command"] and prov["commit"] and prov["hardware"] and "torch" in prov
    assert entry["command"] == prov["command"] and f"`{prov['command']}`" in card


def test_load_by_name_uses_recorded_preprocessing(
    shipped: Path, monkeypatch: pytest.MonkeyPatch, tiny_cifar: Path
) -> None:
    monkeypatch.setenv("RESLAB_WEIGHTS_DIR", str(shipped / "weights"))
    assert "tiny:resnet20" in zoo.available()
    by_name = load_model("tiny:resnet20")
    from_run = load_model(shipped / "run" / "checkpoints" / "best.pt")
    assert by_name.normalization == from_run.normalization
    assert by_name.classes == from_run.classes
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(by_name.model(x), from_run.model(x))
    # Evaluated by name on the test split, with the statistics it was trained with: the
    # same numbers as evaluating the run itself.
    a = evaluate_run("tiny:resnet20", data_dir=str(tiny_cifar), split="test", device="cpu")
    b = evaluate_run(shipped / "run", split="test", device="cpu")
    assert a["top1_error"] == b["top1_error"] and a["n"] == b["n"] == 64


def test_checksum_mismatch_is_refused(shipped: Path, tmp_path: Path) -> None:
    folder = tmp_path / "w"
    shutil.copytree(shipped / "weights", folder)
    path = folder / "resnet20-tiny.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last weight
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256 .* does not match tiny:resnet20"):
        zoo.resolve("tiny:resnet20", folder)


def test_download_checks_sha256(shipped: Path, tmp_path: Path) -> None:
    """An entry with only a URL is fetched into the cache and checked (a file:// URL here)."""
    src = shipped / "weights" / "resnet20-tiny.safetensors"
    folder = tmp_path / "remote"
    folder.mkdir()
    entry = json.loads((shipped / "weights" / "manifest.json").read_text())["tiny:resnet20"]
    manifest = {"tiny:resnet20": {**entry, "file": "absent.safetensors", "url": src.as_uri()}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    got = zoo.resolve("tiny:resnet20", folder, cache_dir=tmp_path / "cache")
    assert got.read_bytes() == src.read_bytes()
    manifest["tiny:resnet20"]["sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Exception, match="SHA256 mismatch"):
        zoo.resolve("tiny:resnet20", folder, cache_dir=tmp_path / "cache2")


def test_unknown_name_lists_what_exists(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no weights named 'cifar10:resnet9'; available"):
        zoo.resolve("cifar10:resnet9", tmp_path)


# The networks reslab trained and ships (not the published ImageNet files it can fetch).
SHIPPED = {n: w for n, w in zoo.available(weights_dir=None).items() if w.info.get("results")}


@pytest.mark.parametrize(
    "name",
    sorted(SHIPPED)
    or [pytest.param("none", marks=pytest.mark.skip(reason="no weights shipped yet"))],
)
def test_shipped_weights_load_and_their_cards_match_the_runs(name: str) -> None:
    w = SHIPPED[name]
    tag, model_name = name.split(":")
    model = reslab.create_model(model_name, weights=tag)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert w.file.stat().st_size <= 10 * 2**20
    # The card's number is the best evaluation recorded in the committed run folder.
    run = REPO / w.info["results"]
    evals = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    best = min((r for r in evals if r["kind"] == "eval"), key=lambda r: r["top1_error"])
    assert w.info["val_top1_error"] == round(best["top1_error"], 2)
    assert json.loads((run / "config.json").read_text())["model"] == model_name
    assert f"{w.info['val_top1_error']:.2f}%" in w.card.read_text()


def test_torch_hub_entry_points() -> None:
    """hubconf.py: every registered net is an entry point taking create_model's arguments."""
    model = torch.hub.load(str(REPO), "resnet20", source="local", num_classes=7)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)
    hub = torch.hub.load(str(REPO), "resnet50", source="local")
    assert sum(p.numel() for p in hub.parameters()) == 25_557_032  # torchvision's ResNet-50


def test_published_weights_are_found_where_torch_hub_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchvision's file names carry a SHA-256 prefix: a file already fetched by torch.hub
    is found in $TORCH_HOME and checked against it; a damaged one is refused."""
    assert {"imagenet:resnet18", "imagenet:resnet50", "imagenet:resnet152"} <= set(zoo.available())
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    f = hub / "resnet18-abc.pth"
    torch.save(reslab.create_model("resnet18").state_dict(), f)
    digest = zoo.file_digest(f, "sha256")
    good = hub / f"resnet18-{digest[:8]}.pth"
    f.rename(good)
    mine = tmp_path / "mine"
    mine.mkdir()
    entry = {"model": "resnet18", "file": good.name, "sha256": digest[:8], "url": None}
    (mine / "manifest.json").write_text(json.dumps({"imagenet:resnet18": entry}))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert zoo.resolve("imagenet:resnet18", mine) == good
    loaded = load_model(good)
    assert loaded.classes[0] == "tench" and loaded.normalization["kind"] == "channel"
    entry["sha256"] = "0" * 8
    (mine / "manifest.json").write_text(json.dumps({"imagenet:resnet18": entry}))
    with pytest.raises(ValueError, match="does not match imagenet:resnet18"):
        zoo.resolve("imagenet:resnet18", mine)


def test_commit_is_read_from_git_files(tmp_path: Path) -> None:
    """No child process (it would count a training process's memory twice): loose refs,
    packed refs, a detached HEAD, and no repository at all."""
    from reslab.provenance import commit

    git = tmp_path / "repo" / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    src = tmp_path / "repo" / "src" / "reslab" / "provenance.py"
    src.parent.mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text("0123456789abcdef\n")
    assert commit(src) == "0123456"
    (git / "refs" / "heads" / "main").unlink()
    (git / "packed-refs").write_text("# pack-refs\nfedcba9876543210 refs/heads/main\n")
    assert commit(src) == "fedcba9"
    (git / "HEAD").write_text("abcdef0123456789\n")
    assert commit(src) == "abcdef0"
    assert commit(tmp_path / "elsewhere" / "x.py") == "unknown"
