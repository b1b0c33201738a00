"""``python -m ism.gallery``: the recorded command, kept; the code is ``ism.eval.gallery``."""
from ism.eval.gallery import main

if __name__ == "__main__":
    main()
