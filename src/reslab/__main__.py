"""`python -m reslab ...` (what torchrun launches) is the `reslab` command."""

from .cli import main

raise SystemExit(main())
