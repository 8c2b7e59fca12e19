"""``python -m dsfleet.reconciler.cli`` runs ``dsfleet``."""

from dsfleet.reconciler.cli.main import main

raise SystemExit(main())
