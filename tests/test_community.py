"""The community's CIFAR checkpoints (akamaster/pytorch_resnet_cifar10), loaded as
downloaded: names mapped, their option-A padding layout and their preprocessing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import reslab
from reslab.inference import load_model
from reslab.weights import IMAGENET_NORMALIZATION, CheckpointError


# --- a reference forward pass written as akamaster's resnet.py writes it ---------------
class AkaBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.down = stride != 1 or in_planes != planes
        self.planes = planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.down:  # their LambdaLayer: identity in the middle, zeros on both sides
            p = self.planes // 4
            x = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p), "constant", 0)
        return F.relu(out + x)


class AkaResNet(nn.Module):
    def __init__(self, n: int, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for i, planes in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                blocks.append(AkaBlock(cin, planes, 2 if i > 0 and j == 0 else 1))
                cin = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3]).view(out.size(0), -1)
        return self.linear(out)


@pytest.fixture(scope="module")
def aka(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, AkaResNet]:
    """An akamaster-format resnet20 file: DataParallel names, BN statistics as if trained."""
    torch.manual_seed(0)
    net = AkaResNet(3)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    net.eval()
    state = {"module." + k: v for k, v in net.state_dict().items()}
    path = tmp_path_factory.mktemp("aka") / "resnet20-12fca82f.th"
    torch.save({"state_dict": state, "best_prec1": 91.78}, path)
    return path, net


def test_akamaster_file_loads_as_downloaded(aka) -> None:
    path, ref = aka
    loaded = load_model(path)
    assert loaded.name == "resnet20" and loaded.model.build_args["shortcut_pad"] == "both"
    assert loaded.normalization == IMAGENET_NORMALIZATION  # their transforms.Normalize
    assert loaded.classes[0] == "airplane" and loaded.image_size == 32
    assert loaded.resize_shorter_side == 32  # whole CIFAR images, no 256/224 resize
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), ref(x), atol=1e-5)


def test_the_padding_layout_matters_and_is_enforced(aka) -> None:
    path, ref = aka
    with pytest.raises(CheckpointError, match="shortcut_pad='both'"):
        reslab.create_model("resnet20", weights=str(path))
    both = reslab.create_model("resnet20", shortcut_pad="both", weights=str(path)).eval()
    end = reslab.create_model("resnet20").eval()
    end.load_state_dict(both.state_dict())  # the same tensors in the other layout
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(both(x), ref(x), atol=1e-5)
        assert (end(x) - ref(x)).abs().max() > 0.1  # garbage, as measured on real weights


def test_both_layouts_are_the_same_network_up_to_a_channel_order() -> None:
    """Moving the identity channels is a permutation of the later stages' channels:
    weights permuted to match give the same function in either layout."""
    torch.manual_seed(1)
    end = reslab.create_model("resnet20").eval()
    both = reslab.create_model("resnet20", shortcut_pad="both").eval()
    # Stream channel c of the "end" layout is channel perm[c] of the "both" layout. Stage 2
    # (16 -> 32, 8 zeros in front): c -> (c + 8) mod 32. Stage 3 (32 -> 64, 16 zeros in
    # front): stage 2's channels land at 16 + perm2[c], the new zeros fill 48..63, 0..15.
    perm2 = [(c + 8) % 32 for c in range(32)]
    perm3 = [16 + perm2[c] for c in range(32)] + [(c + 16) % 64 for c in range(32, 64)]
    perms = {"layer2": perm2, "layer3": perm3}
    state = {}
    for k, v in end.state_dict().items():
        stage = k.split(".")[0]
        if stage in perms and v.dim() >= 1:
            out_idx = torch.tensor(perms[stage])
            w = torch.empty_like(v)
            w[out_idx] = v
            if v.dim() == 4 and not (k.endswith("0.conv1.weight")):
                w2 = torch.empty_like(w)
                w2[:, out_idx] = w
                w = w2
            if v.dim() == 4 and k.endswith("0.conv1.weight") and stage == "layer3":
                w2 = torch.empty_like(w)
                w2[:, torch.tensor(perm2)] = w
                w = w2
            state[k] = w
        elif k == "fc.weight":
            w = torch.empty_like(v)
            w[:, torch.tensor(perm3)] = v
            state[k] = w
        else:
            state[k] = v
    both.load_state_dict(state)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(end(x), both(x), atol=1e-4)


def test_normalization_from_names_and_statistics() -> None:
    from reslab.inference import normalization_from

    assert normalization_from(None) is None
    assert normalization_from("imagenet") == IMAGENET_NORMALIZATION
    none = normalization_from("none")
    assert none["mean"] == [0.0, 0.0, 0.0] and none["std"] == [1.0, 1.0, 1.0]
    own = normalization_from(None, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))  # implies channel
    assert own["kind"] == "channel" and own["std"] == [0.25, 0.24, 0.26]
    for args, match in (
        (("channel", (0.5, 0.5, 0.5), None), "needs both --mean and --std"),
        (("channel", (0.5, 0.5), (1, 1, 1)), r"--mean needs 3 numbers on \[0, 1\]"),
        (("channel", (0.5,) * 3, (1, 0, 1)), r"--std needs 3 numbers on \[0, 1\]"),
        (("imagenet", (0.5,) * 3, (1,) * 3), "go with --normalize channel"),
        (("zca", None, None), "choose one of imagenet, none, channel"),
    ):
        with pytest.raises(ValueError, match=match):
            normalization_from(*args)


def test_plain_file_is_fed_as_the_user_says(tmp_path: Path, capsys) -> None:
    """A state dict that records nothing: ImageNet's statistics unless --normalize says
    otherwise, in predict as in the library; a file that records its own is warned."""
    from PIL import Image

    from reslab.cli import main
    from reslab.inference import normalization_from, predict

    torch.manual_seed(0)
    plain = tmp_path / "resnet20-plain.pth"
    torch.save(reslab.create_model("resnet20").state_dict(), plain)
    image = tmp_path / "cat.png"
    Image.fromarray((torch.rand(32, 32, 3) * 255).byte().numpy()).save(image)
    assert load_model(plain).normalization == IMAGENET_NORMALIZATION
    none = normalization_from("none")
    assert load_model(plain, normalization=none).normalization == none
    a = predict(plain, [str(image)], top=10)[0]["top"]
    b = predict(plain, [str(image)], top=10, normalization=none)[0]["top"]
    assert [t["prob"] for t in a] != [t["prob"] for t in b]  # the inputs differ
    assert main(["predict", str(plain), str(image), "--normalize", "none", "--json"]) == 0
    capsys.readouterr()
    assert main(["predict", str(plain), str(image), "--normalize", "channel"]) == 2
    assert "needs both --mean and --std" in capsys.readouterr().err
    aka_file = tmp_path / "aka.th"
    torch.save(
        {"state_dict": {"module." + k: v for k, v in AkaResNet(3).state_dict().items()}}, aka_file
    )
    with pytest.warns(UserWarning, match="instead of the one the file records"):
        load_model(aka_file, normalization=none)
