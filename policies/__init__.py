"""Pure fleet rules over a whole desired state; each returns findings as data."""
