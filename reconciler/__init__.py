"""dsfleet coordinator: load manifests, compile node configs, render files, plan/diff, store, CLI."""
