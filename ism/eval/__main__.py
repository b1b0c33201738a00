"""``python -m ism.eval``: the evaluation (ism/eval/command.py)."""
from ism.eval.command import main

main()
