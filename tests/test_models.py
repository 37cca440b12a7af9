"""Every registered model: shapes, backward, the paper's counts, checkpoint names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import reslab
from reslab.models import create_model, get_spec, list_models
from reslab.models.blocks import PadShortcut
from reslab.models.flops import count_macs, count_params

REFERENCE = (
    Path(__file__).resolve().parents[2] / "shared/reference/imagenet-resnet-state-dicts.json"
)
MODELS = list_models()


def small_input(name: str) -> torch.Tensor:
    # ImageNet nets are fully convolutional: 64 px keeps the loop fast; 1202 layers at
    # 8 px (two stride-2 stages still leave a 2x2 map).
    deep = "1202" in name or "1001" in name
    size = 64 if get_spec(name).family == "imagenet" else (8 if deep else 32)
    return torch.randn(2, 3, size, size)


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward(name: str) -> None:
    model = create_model(name, num_classes=7)
    out = model(small_input(name))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())


@pytest.mark.parametrize("name", [n for n in MODELS if get_spec(n).paper_params])
def test_cifar_params_match_paper(name: str) -> None:
    # Section 4.2 / Table 6 give 0.27M ... 19.4M, rounded to the digits printed.
    spec = get_spec(name)
    model = create_model(name)
    params = count_params(model) / 1e6
    if spec.builder == "preact":
        # Identity Mappings' counts (1.7M, 1.7M, 10.2M) are the conv and fc weights:
        # 1.72M, 1.68M, 10.18M here; BN adds 2 per channel (0.15M at 1001 layers: 10.33M).
        bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        params -= sum(p.numel() for m in bn for p in m.parameters()) / 1e6
    digits = 2 if spec.paper_params < 1 else 1
    assert round(params, digits) == pytest.approx(spec.paper_params)


@pytest.mark.parametrize("name", [n for n in MODELS if get_spec(n).paper_gflops])
def test_imagenet_flops_match_table1(name: str) -> None:
    # Table 1 counts multiply-adds at 224x224 with the paper's stride placement.
    spec = get_spec(name)
    paper = {"stride_in_1x1": True} if spec.block == "bottleneck" else {}  # basic: one place
    model = create_model(name, **paper)
    gmacs = count_macs(model, 224) / 1e9
    assert abs(gmacs - spec.paper_gflops) / spec.paper_gflops < 0.03


def test_v15_stride_costs_more_flops_same_params() -> None:
    v1 = create_model("resnet50", stride_in_1x1=True)
    v15 = create_model("resnet50")
    assert count_params(v1) == count_params(v15)
    assert count_macs(v15, 224) > count_macs(v1, 224) * 1.05  # 4.1G vs 3.86G


@pytest.mark.parametrize("name", ["resnet20", "resnet110", "resnet18", "resnet50"])
def test_option_a_has_no_shortcut_parameters(name: str) -> None:
    a, plain = create_model(name, shortcut="A"), create_model(name, shortcut="none")
    assert count_params(a) == count_params(plain)
    assert any(isinstance(m, PadShortcut) for m in a.modules())


def test_option_b_and_c_projections() -> None:
    # ResNet-34: B projects at the 3 stage changes, C on all 16 blocks.
    def projections(model: torch.nn.Module) -> int:
        return sum(1 for n, _ in model.named_modules() if n.endswith("downsample.0"))

    assert projections(create_model("resnet34", shortcut="B")) == 3
    assert projections(create_model("resnet34", shortcut="C")) == 16
    assert count_params(create_model("resnet34", shortcut="C")) > count_params(
        create_model("resnet34", shortcut="B")
    )


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110, 18, 34])
def test_plain_and_residual_same_weighted_layers(depth: int) -> None:
    def weighted_layers(model: torch.nn.Module) -> int:
        return sum(
            1
            for n, m in model.named_modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and "downsample" not in n
        )

    res, plain = create_model(f"resnet{depth}"), create_model(f"plain{depth}")
    assert weighted_layers(res) == weighted_layers(plain) == depth


@pytest.mark.skipif(not REFERENCE.exists(), reason=f"reference file {REFERENCE} not present")
@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
def test_state_dict_matches_torchvision(name: str) -> None:
    ref = json.loads(REFERENCE.read_text())[name]
    model = create_model(name)
    ours = [
        (k, list(v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in model.state_dict().items()
    ]
    assert ours == [tuple(entry) for entry in ref["state_dict"]]
    assert count_params(model) == ref["num_params"]


def test_state_dict_roundtrip_strict_same_outputs() -> None:
    a, b = create_model("resnet18").eval(), create_model("resnet18").eval()
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(a(x), b(x))


def test_builder_any_depth_width_and_overrides() -> None:
    m = create_model("resnet20", n=2, width_mult=2, num_classes=100, in_chans=1)
    assert m.spec.depths == (2, 2, 2) and m.spec.widths == (32, 64, 128)
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 100)


def test_feature_api() -> None:
    m = create_model("resnet50")
    x = torch.randn(1, 3, 128, 128)
    feats = m.forward_stages(x)  # C2..C5
    assert [f.shape[1] for f in feats] == [256, 512, 1024, 2048]
    assert [128 // f.shape[-1] for f in feats] == [4, 8, 16, 32]
    assert [i["num_chs"] for i in m.feature_info] == [256, 512, 1024, 2048]
    pooled = m.forward_head(m.forward_features(x), pre_logits=True)
    assert pooled.shape == (1, 2048)


def test_zero_init_residual() -> None:
    m = create_model("resnet20", zero_init_residual=True)
    assert all(b.bn2.weight.abs().sum() == 0 for b in m.layer1)
    assert create_model("resnet20").layer1[0].bn2.weight.sum() > 0


def test_he_init_std() -> None:
    conv = create_model("resnet56").layer3[0].conv2  # 64 -> 64, 3x3: fan-out 576
    assert conv.weight.std().item() == pytest.approx((2 / 576) ** 0.5, rel=0.05)


def test_grad_checkpointing_same_gradients() -> None:
    torch.manual_seed(0)
    a = create_model("resnet20", n=2)
    b = create_model("resnet20", n=2, grad_checkpointing=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 3, 32, 32)
    a(x).sum().backward()
    b(x).sum().backward()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "resnet21"}, "valid models: resnet20"),
        ({"name": "resnet20", "shortcut": "D"}, "choose one of A, B, C, none"),
        ({"name": "resnet20", "depth": 3}, "unknown override"),
        ({"name": "resnet20", "block": "huge"}, "choose one of basic, bottleneck"),
    ],
)
def test_bad_arguments_are_clear(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_model(**kwargs)


def test_public_api() -> None:
    assert reslab.list_models() == MODELS
    assert {"resnet20", "resnet1202", "plain110", "resnet152", "plain34"} <= set(MODELS)


def test_options_a_block_does_not_have_are_refused() -> None:
    with pytest.raises(ValueError, match="stride_in_1x1 applies to bottleneck blocks"):
        create_model("resnet20", stride_in_1x1=True)


def test_preactivation_units_keep_the_identity_path_clean() -> None:
    """Identity Mappings, Figure 4(e): x_{l+1} = x_l + F(x_l). With the last conv of every
    unit zeroed, F = 0 and each stage-1 unit passes its input through unchanged (no ReLU
    after the addition)."""
    model = create_model("preresnet110").eval()
    unit = model.layer1[1]
    torch.nn.init.zeros_(unit.conv2.weight)
    x = torch.randn(2, 16, 32, 32)  # negative values too: a ReLU on the path would clip them
    assert torch.equal(unit(x), x)
    head = create_model("preresnet18")
    assert isinstance(head.bn_final, torch.nn.BatchNorm2d)  # the final BN-ReLU before pooling


def test_overrides_a_family_does_not_take_are_refused_by_name() -> None:
    # pre-activation units have fixed shortcuts; fastresnet has no stem option
    with pytest.raises(ValueError, match=r"'preresnet110' does not take shortcut"):
        create_model("preresnet110", shortcut="A")
    with pytest.raises(ValueError, match=r"'fastresnet' does not take stride_in_1x1"):
        create_model("fastresnet", stride_in_1x1=True)


def test_flops_table_rows_and_format() -> None:
    from reslab.models.flops import format_table, model_rows

    rows = {r["name"]: r for r in model_rows(["resnet20", "resnet50"])}
    # ResNet-20, section 4.2: 0.27M parameters. ResNet-50, Table 1: 3.8 GFLOPs (mult-adds).
    assert rows["resnet20"]["params_m"] == pytest.approx(0.27, abs=0.005)
    assert rows["resnet50"]["gmacs"] == pytest.approx(4.1, abs=0.05)  # v1.5: stride on the 3x3
    assert rows["resnet50"]["layers"] == 50 and rows["resnet20"]["shortcut"] == "A"
    text = format_table(list(rows.values()))
    assert text.splitlines()[0].split()[:3] == ["model", "family", "layers"]
    md = format_table(list(rows.values()), markdown=True).splitlines()
    assert md[0].startswith("|") and set(md[1]) <= {"|", "-", " ", ":"}
    assert any(line.startswith("| resnet50 ") for line in md)


def test_cli_models_lists_every_model_and_refuses_unknown(capsys) -> None:
    from reslab.cli import main

    assert main(["models", "resnet20", "preresnet110"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:]] == ["resnet20", "preresnet110"]
    assert "0.27M" in out[1] and "1.73M" in out[2]
    assert main(["models", "resnet21"]) == 2
    assert "unknown model 'resnet21'" in capsys.readouterr().err
