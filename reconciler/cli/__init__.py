"""The ``dsfleet`` command line (an adapter: it wires the pure core, the store and the importers and prints
their results). ``main`` holds the parser, the global flags and the one error handler (console script
``dsfleet.reconciler.cli.main:entry``); ``options`` the shared option helpers; one module per group of commands."""
