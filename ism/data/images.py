"""Turn any user image (path, bytes, PIL or array) into the model's input, or a clear error.

Handles every PIL colour mode (RGBA/LA/P with transparency composited on white, grayscale, CMYK,
16-bit and 32-bit integer, float), rejects non-images, truncated files, empty files and
decompression bombs, and centre-crops + resizes to the model's square input, saying so.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile, UnidentifiedImageError
from torchvision.transforms import v2

MAX_PIXELS = 50_000_000   # ~7000x7000; beyond this PIL's bomb guard refuses to decode
MAX_BYTES = 20 * 1024 * 1024
MIN_SIDE = 8              # a 1x1 or 4x4 'image' carries nothing to classify

Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageInputError(ValueError):
    """The input cannot be used as an image; the message says why, in plain words."""


@dataclass
class PreparedImage:
    tensor: torch.Tensor   # (1, 3, S, S) float in [0, 1]
    note: str              # what was done to the input, for the UI


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, img).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
        return Image.fromarray(a.astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def open_image(source) -> Image.Image:
    """Open ``source`` (path, bytes, PIL image or HxW[xC] uint8 array) as an RGB PIL image."""
    if source is None:
        raise ImageInputError("No picture yet: click an example picture (or upload your own), then press Run.")
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        if source.ndim not in (2, 3) or source.size == 0:
            raise ImageInputError(f"an image array must be HxW or HxWxC, got shape {source.shape}")
        arr = source
        if arr.dtype != np.uint8:
            arr = np.clip(arr.astype(np.float64) * (255 if arr.max() <= 1 else 1), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
    else:
        if isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise ImageInputError(f"file not found: {path.name}")
            size = path.stat().st_size
            if size == 0:
                raise ImageInputError(f"{path.name[:80]} is empty (0 bytes)")
            if size > MAX_BYTES:
                raise ImageInputError(f"{path.name[:80]} is {size / 2**20:.0f} MB; the limit is {MAX_BYTES // 2**20} MB")
            data = path.read_bytes()
        elif isinstance(source, (bytes, bytearray)):
            data = bytes(source)
            if not data:
                raise ImageInputError("the file is empty (0 bytes)")
        else:
            raise ImageInputError(f"cannot read an image from a {type(source).__name__}")
        try:
            img = Image.open(io.BytesIO(data))
            img.load()
        except Image.DecompressionBombError as e:
            raise ImageInputError(f"the image is too large to decode safely (over {MAX_PIXELS:,} pixels)") from e
        except UnidentifiedImageError as e:
            raise ImageInputError("this file is not an image format we can read (try PNG or JPEG)") from e
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageInputError(f"the image file is damaged or truncated ({e})") from e
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ImageInputError(f"the image is {w}x{h}: too large (limit {MAX_PIXELS:,} pixels)")
    if min(w, h) < MIN_SIDE:
        raise ImageInputError(f"the image is {w}x{h}: too small to classify (at least {MIN_SIDE}x{MIN_SIDE})")
    rgb = _to_rgb(img)
    rgb.info["source_mode"] = img.mode
    return rgb


def square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centre square crop (side = the shorter side) of a (C, H, W) image, antialiased resize to ``size``."""
    side = min(x.shape[-2:])
    return v2.functional.resize(v2.functional.center_crop(x, [side, side]), [size, size], antialias=True)


def prepare_image(source, size: int) -> PreparedImage:
    """Open, convert to RGB, centre-crop to a square and resize to ``size`` x ``size``."""
    img = open_image(source)
    w, h = img.size
    mode = img.info.get("source_mode")
    x = v2.functional.pil_to_tensor(img)
    note = []
    if (w, h) != (size, size):
        side = min(w, h)
        x = square(x, size)
        note.append(f"{'centre-cropped to ' + str(side) + 'x' + str(side) + ', ' if w != h else ''}"
                    f"resized from {w}x{h} to {size}x{size}, the model's input size")
    if mode and mode not in ("RGB",):
        note.append(f"converted from {mode} to RGB")
    return PreparedImage(x.unsqueeze(0).float().div(255).clamp(0, 1), "; ".join(note))


def to_display(x: torch.Tensor, scale: int | None = None) -> np.ndarray:
    """(1, C, H, W) in [0, 1] -> (H*scale, W*scale, 3) uint8, nearest-neighbour so pixels stay crisp;
    by default scaled to about 128 pixels (x4 for 32x32, x2 for 64x64)."""
    scale = scale or max(1, 128 // x.shape[-1])
    x = F.interpolate(x.detach().float().cpu().clamp(0, 1), scale_factor=scale, mode="nearest")
    return (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
