"""torch.hub entry points: every registered reslab network, with shipped weights by tag.

    model = torch.hub.load("OWNER/reslab", "resnet56", weights="cifar10")
    model = torch.hub.load("/path/to/a/clone", "resnet20", source="local")

Keyword arguments are those of reslab.create_model (num_classes, shortcut, weights, ...).
"""

from __future__ import annotations

import sys
from pathlib import Path

dependencies = ["torch", "numpy", "PIL", "safetensors"]

# The package lives under src/; a hub checkout is not pip-installed.
_SRC = str(Path(__file__).resolve().parent / "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)

from reslab.models import create_model as _create  # noqa: E402
from reslab.models import list_models as _list  # noqa: E402


def _entry(name: str):
    def build(**kwargs):
        return _create(name, **kwargs)

    build.__name__ = name
    build.__doc__ = f"reslab {name}: reslab.create_model({name!r}, **kwargs)."
    return build


for _name in _list():
    globals()[_name] = _entry(_name)
