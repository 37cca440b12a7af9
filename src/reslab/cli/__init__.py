"""`reslab ...`: parse arguments, call the library. Nothing here that Python users lack.

One module per group of commands (catalog: models, weights; train; evaluate: eval;
use: predict, export; data: sort-val; reproduce: reproduce, report), each with an `add(sub)` that
registers its parsers; the library is imported inside the handlers so that
`reslab --help` stays fast."""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import warnings
from collections.abc import Sequence

from .. import __version__
from ..errors import ReslabError
from ..signals import STOP_SIGNALS
from . import catalog, data, evaluate, reproduce, train, use
from .config_flags import accept_negative_values

DESCRIPTION = """Deep residual networks (He et al., CVPR 2016): train, evaluate, reproduce the
paper's experiments, and use the networks. `reslab COMMAND --help` for each."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reslab", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"reslab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (catalog, train, evaluate, use, data, reproduce):  # the order of `--help`
        command.add(sub)
    for command_parser in sub.choices.values():  # `--std -0.2,...` is a value, then checked
        accept_negative_values(command_parser)
    return parser


# glibc returns freed buffers to the OS and eager PyTorch faults them back in every
# step; keeping them (no mmap, no trim) measured ~10% faster on ResNet-20 training and
# 30-60% on ResNet-50 here (docs/benchmarks.md). Applies to the heavy commands only;
# DataLoader workers go back to glibc's defaults, and the trainer evaluates under them
# (glibc_heap.py: else the workers double its memory, and evaluation batches stay on it).
_MALLOC_TUNING = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"
_HEAVY = {"train", "eval", "reproduce"}


def _reexec_with_malloc_tuning(argv: Sequence[str]) -> None:
    """Restart this process once with the glibc tunables set (Linux, glibc, opt-out)."""
    if (
        sys.platform != "linux"
        or "GLIBC_TUNABLES" in os.environ
        or os.environ.get("RESLAB_MALLOC_TUNING", "1") == "0"
        or not argv
        or argv[0] not in _HEAVY
        or platform.libc_ver()[0] != "glibc"
    ):
        return
    env = {**os.environ, "GLIBC_TUNABLES": _MALLOC_TUNING}
    os.execve(sys.executable, [sys.executable, "-m", "reslab", *argv], env)


def _os_error(e: OSError) -> str:
    if e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return " ".join(str(e).split())


def _exit_at_once(signum: int, _frame: object) -> None:
    """Start-up (imports, reading data): nothing to save yet, so a signal ends the process
    with the shell's status, 128 + signal, and no traceback. (A KeyboardInterrupt raised
    inside the import machinery can be swallowed by Python itself.) Training installs its
    own handler, which saves a checkpoint first."""
    print("interrupted" if signum == signal.SIGINT else "terminated", file=sys.stderr)
    os._exit(128 + signum)


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """warnings.showwarning for the CLI: one `reslab: warning: ...` line, not the Python
    file and source line a warning points at (which mean nothing to a user). Spawned
    workers (reproduce --jobs) are handed this function and install it too."""
    print(f"reslab: warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    with warnings.catch_warnings():  # a call from Python gets its own hook back afterwards
        warnings.showwarning = show_warning
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    if argv is None:  # the real command line, not a call from Python
        _reexec_with_malloc_tuning(sys.argv[1:])
        for sig in STOP_SIGNALS:
            signal.signal(sig, _exit_at_once)
    argv = list(argv) if argv is not None else sys.argv[1:]
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C while the parser's modules load
        print("interrupted", file=sys.stderr)
        return 130
    args.argv = argv  # recorded by commands that write provenance
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, ReslabError) as e:
        # Library errors are written for people: show the message, not a traceback. An
        # OSError (permission denied, disk full, not a directory) names its file.
        msg = " ".join(str(e).split()) if not isinstance(e, OSError) else _os_error(e)
        print(f"reslab {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
