"""The speedrun path: fastresnet (whitening stem, pool-then-BN stages), cutout, the recipe."""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import reslab
from reslab.config import make_config
from reslab.data.loaders import cutout
from reslab.inference import fold_batchnorm
from reslab.models import create_model
from reslab.training.ema import WeightEMA
from reslab.training.loop import train


def _randomised_bn(model: nn.Module, low: float = 0.5) -> nn.Module:
    """Eval-mode BN with non-trivial statistics and positive scales in [low, low + 1]."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + low)
                m.bias.normal_(generator=gen)
                m.running_mean.normal_(generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
    return model.eval()


def test_whitening_stem_decorrelates_patches() -> None:
    # Strongly correlated inputs: every pixel is one shared value plus a little noise.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 1, 1, generator=gen) + 0.1 * torch.randn(64, 3, 16, 16, generator=gen)
    model = create_model("fastresnet")
    model.init_from_data(x)
    half = model.whiten.weight[:12]  # the other 12 filters are the negatives
    torch.testing.assert_close(model.whiten.weight[12:], -half)
    out = nn.functional.conv2d(x, half).permute(0, 2, 3, 1).reshape(-1, 12)  # (M, 12)
    cov = out.T @ out / len(out)
    # Unit variance in every direction (up to the eps added to the eigenvalues)...
    assert torch.allclose(cov.diagonal(), torch.ones(12), atol=0.05)
    # ...and no correlation between directions.
    assert (cov - torch.diag(cov.diagonal())).abs().max() < 1e-3
    assert not model.whiten.weight.requires_grad and model.whiten.bias.requires_grad


def test_fold_crosses_the_max_pool_only_for_positive_scales() -> None:
    model = _randomised_bn(create_model("fastresnet"))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
        folded = fold_batchnorm(copy.deepcopy(model))
        torch.testing.assert_close(folded(x), want, rtol=1e-4, atol=1e-4)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
        # One negative scale: max(s*x) != s*max(x), so that BN must stay.
        model.layer2.bn.weight[3] = -0.7
        want = model(x)
        folded = fold_batchnorm(copy.deepcopy(model))
        torch.testing.assert_close(folded(x), want, rtol=1e-4, atol=1e-4)
        assert isinstance(folded.layer2.bn, nn.BatchNorm2d)
        assert isinstance(folded.layer1.bn, nn.Identity)


def test_fastresnet_overrides_and_errors() -> None:
    model = create_model("fastresnet", widths=(8, 16), depths=(0, 2), num_classes=3)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert len(model.layer2.blocks) == 2 and model.fc.in_features == 16
    with pytest.raises(ValueError, match="fastresnet"):
        create_model("fastresnet", shortcut="B")


def test_cutout_masks_one_square_per_image() -> None:
    x = torch.ones(2, 3, 6, 6)
    out = cutout(x, torch.tensor([0, 3]), torch.tensor([5, 3]), 2)
    # Image 0: centre (0, 5) -> rows -1..0, cols 4..5: the square hangs over two edges.
    assert out[0, :, 0, 4:].eq(0).all() and out[0].eq(0).sum() == 3 * 2
    # Image 1: centre (3, 3) -> rows 2..3, cols 2..3.
    assert out[1, :, 2:4, 2:4].eq(0).all() and out[1].eq(0).sum() == 3 * 4


def test_speedrun_recipe_trains_resumes_and_reports_flip_tta(
    tiny_cifar: Path, tmp_path: Path, cache: None
) -> None:
    cfg = dict(
        recipe="cifar-speedrun",
        data_dir=str(tiny_cifar),
        batch_size=32,
        val_size=64,
        iterations=6,
        warmup_iters=2,
        eval_every=3,
        checkpoint_every=3,
        log_every=3,
        eval_batch_size=64,
        model_args={"widths": [8, 16, 16]},
        cutout=8,
        ema_decay=0.9,
        deterministic=True,
        progress=False,
        threads=1,
    )
    whole = train(make_config(**{**cfg, "out": str(tmp_path / "whole")}))
    assert whole.status == "finished"
    # Whitening came from the data: the stem is no longer its random init.
    assert whole.model.whiten.weight[:12].abs().sum() > 0
    evals = [json.loads(r) for r in (tmp_path / "whole/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals if r["kind"] == "eval"] == [3, 6]
    part = train(make_config(**{**cfg, "out": str(tmp_path / "part")}), stop_after=3)
    assert part.status == "stopped"
    resumed = train(resume=tmp_path / "part")
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the averages, after a resume too
    last = torch.load(tmp_path / "whole/checkpoints/last.pt", weights_only=True)
    assert last["ema_updates"] == 6
    assert torch.equal(last["model"]["fc.weight"], whole.model.state_dict()["fc.weight"])
    assert not torch.equal(last["model"]["fc.weight"], last["train_model"]["fc.weight"])


def test_weight_ema_averages_floats_and_copies_counters() -> None:
    net = nn.BatchNorm1d(2)
    ema = WeightEMA(net, decay=0.5)
    start = net.weight.detach().clone()  # ones
    with torch.no_grad():
        net.weight.fill_(3.0)
    net.num_batches_tracked.fill_(7)
    ema.update()  # warm-up decay min(0.5, 2/11): the new weights count 9/11
    torch.testing.assert_close(ema.model.weight, start + (3.0 - start) * 9 / 11)
    assert ema.model.num_batches_tracked.item() == 7
    for _ in range(50):
        ema.update()
    torch.testing.assert_close(ema.model.weight, torch.full((2,), 3.0))
    assert not ema.model.weight.requires_grad and not ema.model.training
    with pytest.raises(ValueError, match="ema_decay"):
        WeightEMA(net, decay=1.0)


def test_public_train_is_the_function_whatever_was_imported_first() -> None:
    # The training code lives in reslab.training, so importing it can never rebind the
    # name reslab.train to a package (which a subpackage called `train` did).
    importlib.import_module("reslab.training.loop")

    assert callable(reslab.train) and reslab.train is reslab.train
    assert reslab.make_config("cifar-speedrun").model == "fastresnet"
