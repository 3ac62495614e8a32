"""``python -m mobkit.cli``: the same as the ``mobkit`` console script."""

from mobkit.cli import main

raise SystemExit(main())
