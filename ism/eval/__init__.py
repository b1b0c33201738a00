"""The evaluation: sections, the ``python -m ism.evaluate`` command, report, sanity checks, plots."""
