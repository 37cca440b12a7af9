"""TrainConfig as command-line flags: one flag per field, grouped, with one line of help."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import types
import typing

from ..config import GROUPS, TrainConfig

EXAMPLES = """examples:
  reslab train --data-dir ~/data/cifar10 --model resnet56 --out runs/r56
      the paper's CIFAR recipe (64k steps, lr 0.1 /10 at 32k and 48k)
  reslab train --data-dir ~/data/cifar10 --scale 0.1 --out runs/short   (6,400 steps)
  reslab train --recipe imagenet-paper --data-dir ~/data/imagenette --model resnet18 \\
      --batch-size 64 --image-size 128 --iterations 2000 --out runs/in18
  reslab train --resume runs/r56            continue an interrupted run exactly
  reslab train --config runs/r56/config.json --seed 1 --out runs/r56-s1
      the same settings, another seed
"""


def _field_type(f: dataclasses.Field) -> tuple[type, bool]:
    """(element type, is-tuple) of a TrainConfig field, unwrapping `X | None`."""
    hint = typing.get_type_hints(TrainConfig)[f.name]
    base = hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        base = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(base) is tuple:
        return typing.get_args(base)[0], True
    return base, False


def _parse_tuple(kind: type):
    def parse(text: str) -> tuple:
        return tuple(kind(v) for v in text.split(",") if v.strip())

    return parse


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (--batch-size, --lr, --compile/--no-compile, ...),
    in its group, with the help and choices written beside the field (config.py)."""
    defaults = TrainConfig()
    groups = {title: parser.add_argument_group(title) for title in GROUPS}
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        group = groups[meta["group"]]
        flags = ["--" + f.name.replace("_", "-")] + ([meta["alias"]] if meta["alias"] else [])
        default = getattr(defaults, f.name)
        text = meta["help"]
        show = default not in (None, {}) and "(default:" not in text
        helptext = f"{text} (default: {default})" if show else text
        kind, is_tuple = _field_type(f)
        if kind is bool:
            group.add_argument(
                *flags, action=argparse.BooleanOptionalAction, default=None, help=helptext
            )
        elif is_tuple:
            group.add_argument(
                *flags, type=_parse_tuple(kind), default=None, metavar="A,B", help=helptext
            )
        elif f.name == "model_args":  # parsed by config_overrides: one line if bad
            group.add_argument(*flags, default=None, metavar="JSON", help=helptext)
        else:
            choices = list(meta["choices"]) or None
            group.add_argument(
                *flags,
                type=kind,
                default=None,
                help=helptext,
                choices=choices,
                metavar=None if choices else f.name.upper(),
            )


def config_overrides(args: argparse.Namespace) -> dict:
    """The config fields given as flags; --model-args parsed from JSON (a non-object is
    refused by check_config, naming the field)."""
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None and f.name != "recipe"
    }
    if "model_args" in given:
        try:
            given["model_args"] = json.loads(given["model_args"])
        except ValueError as e:
            raise ValueError(
                f"--model-args {given['model_args']!r} is not JSON ({e}); "
                """give an object such as '{"n": 2}'"""
            ) from None
    return given


# Values that start with "-" and a digit or ".digit" ("-0.2,0.3", "-1e-3") are values, not
# flags: argparse's own rule takes only "-1" and "-.5", and "expected one argument" would
# hide the real answer ("milestones must be ... >= 1"). No reslab flag starts so.
NEGATIVE_VALUE = re.compile(r"^-\.?\d")


def accept_negative_values(parser: argparse.ArgumentParser) -> None:
    parser._negative_number_matcher = NEGATIVE_VALUE  # argparse's documented-nowhere hook
