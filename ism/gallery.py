"""``python -m ism.gallery``: the recorded command, kept; the code is ``ism.eval.gallery``."""
from ism.eval.gallery import main


def cli() -> None:
    """The `ism-gallery` console script (installed by `pip install .`)."""
    main()


if __name__ == "__main__":
    main()
