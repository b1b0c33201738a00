"""``python -m ism.evaluate``: the recorded command, kept; the code is ``ism.eval.command``."""
from ism.eval.command import main


def cli() -> None:
    """The `ism-evaluate` console script (installed by `pip install .`)."""
    main()


if __name__ == "__main__":
    main()
