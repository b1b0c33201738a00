"""``python -m ism.evaluate``: the recorded command, kept; the code is ``ism.eval.command``."""
from ism.eval.command import main

if __name__ == "__main__":
    main()
