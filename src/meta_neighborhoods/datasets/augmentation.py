"""Training-image augmentation: the standard CIFAR crop and flip, and the authors' full pipeline.

The authors' image pipeline (``lupalab/Meta-Neighborhoods``, ``data_generator.py``) augments every training image
by a random crop of the image zero-padded by 4 pixels, a horizontal flip, one AutoAugment sub-policy (Cubuk et al.,
"AutoAugment", CVPR 2019: the 25 sub-policies found on CIFAR-10) and Cutout (DeVries & Taylor 2017: a 16 x 16
square set to zero). ``paper_augment`` does the same, in that order, on uint8 batches. One difference: we rotate
in both directions, as the AutoAugment paper defines the operation; the authors' copy of it rotates one way only. Randomness comes only from
the generator passed in, so a batch is reproducible from the run's seed and epoch (and ``--resume`` stays exact).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

__all__ = ["crop_flip", "autoaugment", "cutout", "paper_augment", "CIFAR10_POLICY"]

# (probability, operation, magnitude level 0-9) pairs of the 25 CIFAR-10 sub-policies (AutoAugment, appendix).
CIFAR10_POLICY = (
    ((0.1, "invert", 7), (0.2, "contrast", 6)), ((0.7, "rotate", 2), (0.3, "translate_x", 9)),
    ((0.8, "sharpness", 1), (0.9, "sharpness", 3)), ((0.5, "shear_y", 8), (0.7, "translate_y", 9)),
    ((0.5, "autocontrast", 8), (0.9, "equalize", 2)), ((0.2, "shear_y", 7), (0.3, "posterize", 7)),
    ((0.4, "color", 3), (0.6, "brightness", 7)), ((0.3, "sharpness", 9), (0.7, "brightness", 9)),
    ((0.6, "equalize", 5), (0.5, "equalize", 1)), ((0.6, "contrast", 7), (0.6, "sharpness", 5)),
    ((0.7, "color", 7), (0.5, "translate_x", 8)), ((0.3, "equalize", 7), (0.4, "autocontrast", 8)),
    ((0.4, "translate_y", 3), (0.2, "sharpness", 6)), ((0.9, "brightness", 6), (0.2, "color", 8)),
    ((0.5, "solarize", 2), (0.0, "invert", 3)), ((0.2, "equalize", 0), (0.6, "autocontrast", 0)),
    ((0.2, "equalize", 8), (0.8, "equalize", 4)), ((0.9, "color", 9), (0.6, "equalize", 6)),
    ((0.8, "autocontrast", 4), (0.2, "solarize", 8)), ((0.1, "brightness", 3), (0.7, "color", 0)),
    ((0.4, "solarize", 5), (0.9, "autocontrast", 3)), ((0.9, "translate_y", 9), (0.7, "translate_y", 9)),
    ((0.9, "autocontrast", 2), (0.8, "solarize", 3)), ((0.8, "equalize", 8), (0.1, "invert", 3)),
    ((0.7, "translate_y", 9), (0.9, "autocontrast", 1)),
)
# Magnitude level 0..9 maps linearly onto these ranges (AutoAugment, Table 6); enhancements are 1 +- magnitude.
MAGNITUDES = {"shear_x": (0.0, 0.3), "shear_y": (0.0, 0.3), "translate_x": (0.0, 150 / 331),
              "translate_y": (0.0, 150 / 331), "rotate": (0.0, 30.0), "color": (0.0, 0.9), "contrast": (0.0, 0.9),
              "sharpness": (0.0, 0.9), "brightness": (0.0, 0.9), "posterize": (8, 4), "solarize": (256, 0)}
FILL = 128  # grey, where a geometric operation uncovers the image
ENHANCE = {"color": ImageEnhance.Color, "contrast": ImageEnhance.Contrast, "sharpness": ImageEnhance.Sharpness,
           "brightness": ImageEnhance.Brightness}
CUTOUT = 16


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random padded crop plus horizontal flip for the whole batch with one gather (no per-image Python loop)."""
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    top = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator)
    left = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator)
    flip = torch.rand(b, 1, generator=generator) < 0.5
    rows = top + torch.arange(h)
    columns = left + torch.where(flip, torch.arange(w - 1, -1, -1), torch.arange(w))
    return padded[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None],
                  rows[:, None, :, None], columns[:, None, None, :]]


def _magnitude(name: str, level: int) -> float:
    low, high = MAGNITUDES[name]
    return low + (high - low) * level / 9


def _operate(image: Image.Image, name: str, level: int, sign: int) -> Image.Image:
    """One AutoAugment operation; ``sign`` (+-1) is the random direction of the signed ones."""
    if name in ("autocontrast", "equalize", "invert"):
        return getattr(ImageOps, name)(image)
    m = _magnitude(name, level)
    if name in ENHANCE:
        return ENHANCE[name](image).enhance(1 + sign * m)
    if name == "posterize":
        return ImageOps.posterize(image, int(round(m)))
    if name == "solarize":
        return ImageOps.solarize(image, int(m))
    if name == "rotate":
        return image.rotate(sign * m, resample=Image.Resampling.NEAREST, fillcolor=_fill(image))
    size = image.size
    matrix = {"shear_x": (1, sign * m, 0, 0, 1, 0), "shear_y": (1, 0, 0, sign * m, 1, 0),
              "translate_x": (1, 0, sign * m * size[0], 0, 1, 0),
              "translate_y": (1, 0, 0, 0, 1, sign * m * size[1])}[name]
    resample = Image.Resampling.BICUBIC if name.startswith("shear") else Image.Resampling.NEAREST
    return image.transform(size, Image.Transform.AFFINE, matrix, resample, fillcolor=_fill(image))


def _fill(image: Image.Image):
    return FILL if image.mode == "L" else (FILL,) * len(image.getbands())


def autoaugment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """One random CIFAR-10 sub-policy per image of a uint8 batch (B, C, H, W), C = 1 or 3."""
    out = x.clone()
    for i, image in enumerate(x.permute(0, 2, 3, 1).numpy()):
        pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
        for probability, name, level in CIFAR10_POLICY[rng.integers(len(CIFAR10_POLICY))]:
            if rng.random() < probability:
                pil = _operate(pil, name, level, 1 if rng.random() < 0.5 else -1)
        out[i] = torch.from_numpy(np.asarray(pil).reshape(image.shape).copy()).permute(2, 0, 1)
    return out


def cutout(x: torch.Tensor, generator: torch.Generator, size: int = CUTOUT) -> torch.Tensor:
    """Zero a size x size square (clipped at the borders) centred at a uniform random pixel of each image."""
    b, _, h, w = x.shape
    centre_y = torch.randint(0, h, (b, 1), generator=generator)
    centre_x = torch.randint(0, w, (b, 1), generator=generator)
    rows = (torch.arange(h) - centre_y + size // 2).clamp(min=-1)  # inside the square: 0 <= . < size
    columns = (torch.arange(w) - centre_x + size // 2).clamp(min=-1)
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((columns >= 0) & (columns < size))[:, None, :]
    return x.masked_fill(inside[:, None], 0)


def paper_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The authors' pipeline on a uint8 batch: crop and flip, AutoAugment, Cutout; still uint8."""
    x = crop_flip(x, generator)
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
    return cutout(autoaugment(x, rng), generator)
