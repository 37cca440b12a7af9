"""Variants are data: name -> architecture, with the paper's own figures beside it."""

from __future__ import annotations

import dataclasses
import inspect
import numbers
import typing
from dataclasses import dataclass, field

from torch import nn

from .fast import FastResNet
from .preact import PreActResNet
from .resnet import ResNet

# Which class builds a spec: the paper's networks, the pre-activation follow-up, fastresnet.
BUILDERS: dict[str, type[nn.Module]] = {
    "resnet": ResNet,
    "preact": PreActResNet,
    "fast": FastResNet,
}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "cifar" (section 4.2), "imagenet" (Table 1) or "fast" (models/fast.py)
    block: str  # "basic" | "bottleneck"
    depths: tuple[int, ...]  # blocks per stage
    widths: tuple[int, ...]  # base filters per stage
    shortcut: str  # default option: A on CIFAR, B on ImageNet, "none" for plain nets
    num_classes: int
    input_size: int  # native training crop, pixels
    stem_width: int
    paper_params: float | None = None  # millions, section 4.2 / Table 6
    paper_gflops: float | None = None  # multiply-adds x 1e9 at 224x224, Table 1
    paper_error: dict[str, float] = field(default_factory=dict)  # %, from the paper
    builder: str = "resnet"  # a key of BUILDERS

    @property
    def layers(self) -> int:
        """Weighted layers as the paper counts them (each builder knows its own count)."""
        return BUILDERS[self.builder].weighted_layers(self.block, self.depths)

    def builder_kwargs(self) -> dict[str, object]:
        """The spec as keyword arguments of its builder (each takes the ones it names)."""
        every = {
            "block": self.block,
            "depths": self.depths,
            "widths": self.widths,
            "stem": self.family,
            "stem_width": self.stem_width,
            "num_classes": self.num_classes,
            "shortcut": self.shortcut,
        }
        accepts = builder_arguments(self.builder)
        return {k: v for k, v in every.items() if k in accepts}


def builder_arguments(builder: str) -> frozenset[str]:
    """The keyword arguments a builder's constructor takes, read from its signature."""
    params = inspect.signature(BUILDERS[builder]).parameters
    return frozenset(n for n, p in params.items() if p.kind is not p.VAR_KEYWORD)


# What a value of each annotation in a builder's signature must be (bool before int:
# True is an int to Python, never a count to a user).
_KINDS = (
    ("bool", (bool,), "true or false"),
    ("int", (numbers.Integral,), "an integer"),
    ("float", (numbers.Real,), "a number"),
    ("str", (str,), "a string"),
)


def check_argument_types(builder: str, kwargs: dict[str, object]) -> None:
    """Each argument's value against the type its builder's constructor declares: a
    model argument "sometimes" for a bool is refused, not read as true."""
    hints = typing.get_type_hints(BUILDERS[builder].__init__)
    for key, value in kwargs.items():
        hint = str(hints.get(key, ""))
        seq = "Sequence" in hint or "tuple" in hint
        inner = hint.split("[")[-1] if seq else hint
        for word, types, what in _KINDS:
            if word not in inner:
                continue
            items = list(value) if seq and isinstance(value, (list, tuple)) else [value]
            ok = (not seq or isinstance(value, (list, tuple))) and all(
                isinstance(v, types) and (word == "bool" or not isinstance(v, bool)) for v in items
            )
            if not ok:
                kind = f"a list of {what.removeprefix('an ').removeprefix('a ')}s" if seq else what
                raise ValueError(f"model argument {key} must be {kind}, got {value!r}")
            break


# Sizes beyond any network of the paper's kind, refused before they allocate: a
# checkpoint claiming n = 1e8 or 1e10 classes would take minutes and gigabytes first.
LIMITS = {"num_classes": 1_000_000, "n": 10_000, "depths": 10_000, "widths": 1 << 16}


def _check_sizes(num_classes: object, overrides: dict[str, object]) -> None:
    for key, limit in LIMITS.items():
        value = num_classes if key == "num_classes" else overrides.get(key)
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, numbers.Real) and v > limit for v in values):
            raise ValueError(f"{key} {value} is beyond what reslab builds (at most {limit:,})")


def spec_of(model: nn.Module) -> ModelSpec | None:
    """The registered spec a model was built from (with the overrides applied), if any."""
    return getattr(model, "spec", None)


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


# CIFAR-10, section 4.2: 6n+2 layers, option A; parameters and test errors of Table 6.
_CIFAR = {  # n: (paper params M, ResNet error %, plain error % where the paper plots it)
    3: (0.27, 8.75),
    5: (0.46, 7.51),
    7: (0.66, 7.17),
    9: (0.85, 6.97),
    18: (1.7, 6.43),
    200: (19.4, 7.93),
}
for _n, (_params, _err) in _CIFAR.items():
    _depth = 6 * _n + 2
    for _plain in (False, True):
        register(
            ModelSpec(
                name=f"{'plain' if _plain else 'resnet'}{_depth}",
                family="cifar",
                block="basic",
                depths=(_n, _n, _n),
                widths=(16, 32, 64),
                shortcut="none" if _plain else "A",
                num_classes=10,
                input_size=32,
                stem_width=16,
                paper_params=_params,
                paper_error={} if _plain else {"cifar10_test_top1": _err},
            )
        )

# ImageNet, Table 1 (FLOPs) and Table 3/4 (10-crop val top-1 / top-5 error, option B).
_IMAGENET = {
    18: ("basic", (2, 2, 2, 2), 1.8, {"top1_10crop": 27.88}),
    34: ("basic", (3, 4, 6, 3), 3.6, {"top1_10crop": 24.52, "top5_10crop": 7.46}),
    50: ("bottleneck", (3, 4, 6, 3), 3.8, {"top1_10crop": 22.85, "top5_10crop": 6.71}),
    101: ("bottleneck", (3, 4, 23, 3), 7.6, {"top1_10crop": 21.75, "top5_10crop": 6.05}),
    152: ("bottleneck", (3, 8, 36, 3), 11.3, {"top1_10crop": 21.43, "top5_10crop": 5.71}),
}
_PLAIN_IMAGENET = {18: {"top1_10crop": 27.94}, 34: {"top1_10crop": 28.54}}  # Table 2
for _depth, (_block, _depths, _gflops, _err) in _IMAGENET.items():
    for _plain in (False, True):
        if _plain and _depth not in _PLAIN_IMAGENET:
            continue
        register(
            ModelSpec(
                name=f"{'plain' if _plain else 'resnet'}{_depth}",
                family="imagenet",
                block=_block,
                depths=_depths,
                widths=(64, 128, 256, 512),
                shortcut="none" if _plain else "B",
                num_classes=1000,
                input_size=224,
                stem_width=64,
                paper_gflops=_gflops,
                paper_error=_PLAIN_IMAGENET[_depth] if _plain else _err,
            )
        )


# Beyond the paper: wide, shallow residual nets for fast CIFAR training (models/fast.py).
register(
    ModelSpec(
        name="fastresnet",
        family="fast",
        builder="fast",
        block="basic",
        depths=(1, 1, 1),
        widths=(32, 128, 128),
        shortcut="A",
        num_classes=10,
        input_size=32,
        stem_width=24,
    )
)


# He et al., *Identity Mappings in Deep Residual Networks* (ECCV 2016): full
# pre-activation units (models/preact.py). CIFAR-10 test error of its Table 3 and
# section 4.2; parameter counts of its Table 3 and Figure 1.
_PREACT_CIFAR = {  # name: (block, n, params M, CIFAR-10 test error %)
    "preresnet110": ("basic", 18, 1.7, 6.37),
    "preresnet164": ("bottleneck", 18, 1.7, 5.46),
    "preresnet1001": ("bottleneck", 111, 10.2, 4.92),
}
for _name, (_block, _n, _params, _err) in _PREACT_CIFAR.items():
    register(
        ModelSpec(
            name=_name,
            family="cifar",
            block=_block,
            depths=(_n, _n, _n),
            widths=(16, 32, 64),
            shortcut="B",
            num_classes=10,
            input_size=32,
            stem_width=16,
            paper_params=_params,
            paper_error={"cifar10_test_top1": _err},
            builder="preact",
        )
    )
for _depth, (_block, _depths, _gflops, _err) in _IMAGENET.items():
    register(
        ModelSpec(
            name=f"preresnet{_depth}",
            family="imagenet",
            block=_block,
            depths=_depths,
            widths=(64, 128, 256, 512),
            shortcut="B",
            num_classes=1000,
            input_size=224,
            stem_width=64,
            builder="preact",
        )
    )


def list_models() -> list[str]:
    """Registered model names, CIFAR family first, each family by depth."""
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(_REGISTRY)}") from None


# Overrides accepted by create_model on top of the registered spec.
OVERRIDES = {
    "depths": "blocks per stage, e.g. (2, 2, 2) for a CIFAR net with n=2",
    "n": "CIFAR shorthand: n blocks in each of the three stages (6n+2 layers)",
    "widths": "base filters per stage",
    "width_mult": "multiply every width (stem included) by this factor",
    "block": "'basic' or 'bottleneck'",
    "in_chans": "input channels (3 for RGB)",
    "stride_in_1x1": "bottleneck: the paper's stride on the first 1x1 (default: torchvision's v1.5)",
    "zero_init_residual": "zero-init each branch's last BN scale (beyond the paper)",
    "grad_checkpointing": "recompute activations in backward to save memory",
    "head_scale": "fastresnet: multiply the logits by this factor",
    "shortcut_pad": "option A: zero channels after the identity ('end', default) or on both "
    "sides ('both', akamaster's CIFAR checkpoints)",
}


def build(
    name: str, num_classes: int | None = None, shortcut: str | None = None, **overrides: object
) -> nn.Module:
    """Construct a registered network, changed by `overrides` (see OVERRIDES); no weights
    (reslab.models.create_model loads those). The model carries `spec` (what it is) and
    `build_args` (how to build it again; saved in checkpoints)."""
    spec = get_spec(name)
    for key in ("num_classes", "in_chans", "n"):  # int() would round 2.5 classes silently
        value = num_classes if key == "num_classes" else overrides.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, numbers.Integral)
        ):
            raise ValueError(f"{key} must be an integer, got {value!r}")
    for key, value in (
        ("num_classes", num_classes),
        ("in_chans", overrides.get("in_chans")),
        ("width_mult", overrides.get("width_mult")),
    ):
        if value is not None and not value > 0:
            raise ValueError(f"{key} must be > 0, got {value}")
    _check_sizes(num_classes, overrides)
    build_args = {"name": name, "num_classes": num_classes, "shortcut": shortcut, **overrides}
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        valid = "; ".join(f"{k}: {v}" for k, v in OVERRIDES.items())
        raise ValueError(f"unknown override(s) {', '.join(unknown)} for {name!r}; valid: {valid}")
    kwargs = spec.builder_kwargs()
    mult = float(overrides.pop("width_mult", 1.0))
    grad_ckpt = bool(overrides.pop("grad_checkpointing", False))
    if "n" in overrides:  # CIFAR shorthand: n blocks in every stage
        overrides["depths"] = (int(overrides.pop("n")),) * len(spec.depths)
    classes = int(num_classes) if num_classes is not None else None
    asked = {"num_classes": classes, "shortcut": shortcut, **overrides}
    kwargs.update({k: v for k, v in asked.items() if v is not None})
    refused = sorted(set(kwargs) - builder_arguments(spec.builder))
    if refused:
        generic = {"n", "width_mult", "grad_checkpointing"}  # handled here, for every family
        takes = sorted(set(OVERRIDES) & builder_arguments(spec.builder) | generic)
        raise ValueError(
            f"{name!r} does not take {', '.join(refused)}; it takes: {', '.join(takes)}"
        )
    if mult != 1.0:
        kwargs["widths"] = tuple(max(1, round(w * mult)) for w in kwargs["widths"])
        if "stem_width" in kwargs:
            kwargs["stem_width"] = max(1, round(spec.stem_width * mult))
    check_argument_types(spec.builder, {k: v for k, v in asked.items() if v is not None})
    model = BUILDERS[spec.builder](**kwargs)
    model.set_grad_checkpointing(grad_ckpt)
    changed = {
        k: kwargs[k]
        for k in ("block", "depths", "widths", "shortcut", "num_classes")
        if k in kwargs
    }
    model.spec = dataclasses.replace(spec, **changed)
    model.build_args = build_args
    return model
