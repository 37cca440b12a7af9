"""`reslab ...`: parse arguments, call the library. Nothing here that Python users lack."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__


def _models(args: argparse.Namespace) -> int:
    from .models.flops import format_table, model_rows

    print(format_table(model_rows(args.names or None), markdown=args.markdown))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reslab", description=__doc__)
    parser.add_argument("--version", action="version", version=f"reslab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list the model zoo with parameters and FLOPs")
    p.add_argument("names", nargs="*", help="only these models")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    p.set_defaults(func=_models)

    from .commands import add_commands

    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as e:
        # Library errors are written for people: show the message, not a traceback.
        print(f"reslab {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
