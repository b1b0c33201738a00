"""train.pack: a data folder survives the trip through one file unchanged."""
from train.pack import main, pack, unpack


def test_pack_and_unpack_give_back_every_file(tmp_path):
    src = tmp_path / "data"
    files = {"train/cat/0.jpg": b"\xff\xd8 a cat", "train/dog/1.jpg": b"", "test/cat/2.jpg": bytes(range(256))}
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    assert pack(src, str(tmp_path / "blob")) == 3
    assert unpack(str(tmp_path / "blob"), tmp_path / "back") == 3
    for rel, data in files.items():
        assert (tmp_path / "back" / rel).read_bytes() == data
    main(["unpack", str(tmp_path / "blob"), str(tmp_path / "again")])
    assert sorted(p.relative_to(tmp_path / "again").as_posix() for p in (tmp_path / "again").rglob("*.jpg")) \
        == sorted(files)
