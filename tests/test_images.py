"""Any upload becomes the model's input or a plain-words error (the app's malformed-file list)."""
import io

import numpy as np
import pytest
from PIL import Image

from ism.data.images import ImageInputError, prepare_image


def _png(img: Image.Image, fmt: str = "PNG") -> bytes:
    b = io.BytesIO()
    img.save(b, fmt)
    return b.getvalue()


@pytest.mark.parametrize("mode,fmt", [("RGB", "PNG"), ("RGBA", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("P", "PNG"),
                                      ("I;16", "PNG"), ("CMYK", "JPEG"), ("1", "PNG"), ("F", "TIFF")])
def test_every_colour_mode_becomes_rgb(tmp_path, mode, fmt):
    img = Image.new(mode, (40, 30))
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(_png(img, fmt))
    p = prepare_image(str(path), 32)
    assert p.tensor.shape == (1, 3, 32, 32) and 0 <= p.tensor.min() and p.tensor.max() <= 1
    assert "resized from 40x30 to 32x32" in p.note and "centre-cropped" in p.note
    assert (f"converted from {mode} to RGB" in p.note) == (mode != "RGB")


def test_transparency_is_composited_on_white():
    p = prepare_image(Image.new("RGBA", (32, 32), (0, 0, 0, 0)), 32)
    assert p.tensor.min() == 1.0 and p.note == "converted from RGBA to RGB"


@pytest.mark.parametrize("data,msg", [
    (b"", "empty"),
    (b"hello, this is text", "not an image format"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, "damaged or truncated|not an image"),
])
def test_broken_files(tmp_path, data, msg):
    f = tmp_path / "upload.png"
    f.write_bytes(data)
    with pytest.raises(ImageInputError, match=msg):
        prepare_image(str(f), 32)


def test_truncated_jpeg(tmp_path):
    data = _png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG")
    f = tmp_path / "cut.jpg"
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageInputError, match="damaged or truncated"):
        prepare_image(str(f), 32)


def test_tiny_and_huge_images(tmp_path):
    with pytest.raises(ImageInputError, match="1x1: too small"):
        prepare_image(_png(Image.new("RGB", (1, 1))), 32)
    big = tmp_path / "big.png"
    Image.new("L", (8000, 8000)).save(big)   # 64 Mpx: over the limit, compresses to a few KB
    with pytest.raises(ImageInputError, match="too large"):
        prepare_image(str(big), 32)


def test_decompression_bomb_is_refused():
    bomb = _png(Image.new("1", (20000, 20000)))   # 400 Mpx, a ~50 KB file
    assert len(bomb) < 200_000
    with pytest.raises(ImageInputError, match="too large"):
        prepare_image(bomb, 32)


def test_long_file_name_and_missing_file(tmp_path):
    with pytest.raises(ImageInputError, match="file not found"):
        prepare_image(str(tmp_path / ("a" * 200 + ".png")), 32)
    f = tmp_path / ("b" * 240 + ".png")
    f.write_bytes(b"")
    with pytest.raises(ImageInputError, match="empty") as e:
        prepare_image(str(f), 32)
    assert len(str(e.value)) < 150   # the name is shortened in the message


def test_no_image():
    with pytest.raises(ImageInputError, match="No picture yet"):
        prepare_image(None, 32)


def test_examples_follow_the_stated_rule():
    """The gallery's images are the first test images of each class in file order (ism.data.examples)."""
    import numpy as np
    from conftest import DATA
    from PIL import Image

    from ism.data.datasets import load_split
    from ism.data.examples import EXAMPLES_DIR, PER_CLASS, example_indices

    test = load_split(DATA, "test", dataset="cifar10")
    for name, idx in example_indices(test, PER_CLASS["cifar10"]).items():
        for i, j in enumerate(idx):
            shipped = np.asarray(Image.open(EXAMPLES_DIR / "cifar10" / f"{name}_{i}.png").convert("RGB"))
            assert (shipped == test.images[j].permute(1, 2, 0).numpy()).all(), (name, i)
    assert len(list((EXAMPLES_DIR / "cifar10").glob("*.png"))) == 10 * PER_CLASS["cifar10"]
