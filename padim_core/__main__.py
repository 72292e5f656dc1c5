"""``python -m padim_core``: the ``padim`` command line."""

from padim_core.cli import main

raise SystemExit(main())
