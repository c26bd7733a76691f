"""``python -m reference`` runs the ``vireid`` command line."""

from reference.cli import main

raise SystemExit(main())
