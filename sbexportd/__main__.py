"""`python -m sbexportd ...`: the same command line as the `sbexportd` script."""
from .cli import main

raise SystemExit(main())
