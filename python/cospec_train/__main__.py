"""`python -m cospec_train` / `torchrun ... -m cospec_train`: the arbiter trainer (see cli.py)."""

from .cli import main

raise SystemExit(main())
