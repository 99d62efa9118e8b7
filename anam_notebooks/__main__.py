"""`python -m anam_notebooks` is the `anam-notebooks` command."""

from .cli import main

raise SystemExit(main())
