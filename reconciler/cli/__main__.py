"""``python -m reconciler.cli`` runs ``dsfleet``."""

from reconciler.cli.main import main

raise SystemExit(main())
