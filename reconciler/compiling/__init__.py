"""Compiling a validated fleet (pure core): desired state, per-instance compile, rendering, the key-file writer."""
