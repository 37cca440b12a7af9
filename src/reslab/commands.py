"""Sub-commands beyond `models`, registered here so cli.py stays one screen."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    pass
