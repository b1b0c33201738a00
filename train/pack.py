"""Pack a data folder into one file and back, to carry it to a borrowed GPU machine.

    python -m train.pack pack ../shared/data/cifar10 .gpu/cifar10     # .gpu/cifar10.bin + .idx
    python -m train.pack unpack .gpu/cifar10 /tmp/cifar10             # on the GPU machine

Why: a copy of the working tree that travels to such a machine is limited in disk blocks, and
CIFAR-10's 60,000 small JPEGs take 55 MB as bytes but about 240 MB as files. Concatenated into one
file (the index: each file's relative path and length, JSON) they travel as 57 MB.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def pack(root: Path, prefix: str) -> int:
    index = []
    with open(prefix + ".bin", "wb") as f:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                data = p.read_bytes()
                f.write(data)
                index.append([p.relative_to(root).as_posix(), len(data)])
    Path(prefix + ".idx").write_text(json.dumps(index))
    return len(index)


def unpack(prefix: str, dest: Path) -> int:
    index = json.loads(Path(prefix + ".idx").read_text())
    with open(prefix + ".bin", "rb") as f:
        for rel, size in index:
            q = dest / rel
            q.parent.mkdir(parents=True, exist_ok=True)
            q.write_bytes(f.read(size))
    return len(index)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m train.pack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("verb", choices=["pack", "unpack"])
    p.add_argument("src", help="pack: the data folder; unpack: the prefix of .bin/.idx")
    p.add_argument("dst", help="pack: the prefix to write; unpack: the folder to write")
    a = p.parse_args(argv)
    n = pack(Path(a.src), a.dst) if a.verb == "pack" else unpack(a.src, Path(a.dst))
    print(f"{n} files")


if __name__ == "__main__":
    main()
