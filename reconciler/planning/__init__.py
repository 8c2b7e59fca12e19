"""Planning (pure core): desired vs stored node configs, and the plan's text and JSON reports."""
