"""Training package: ``python -m train <component> [options]``; every shipped weight came from here."""
