"""The evaluation: sections, the ``python -m ism.eval`` command, report, sanity checks, plots."""
