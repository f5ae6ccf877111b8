"""The authors' augmentation pipeline: shapes, reproducibility, and what each step may change."""

import numpy as np
import pytest
import torch

from meta_neighborhoods.datasets import augmentation
from meta_neighborhoods.datasets.augmentation import (CIFAR10_POLICY, MAGNITUDES, _operate, autoaugment, crop_flip,
                                                      cutout, paper_augment)
from PIL import Image


def images(channels, n=6, size=32, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, channels, size, size), dtype=np.uint8))


def test_the_policy_has_25_pairs_of_known_operations_with_levels_0_to_9():
    names = set(MAGNITUDES) | {"autocontrast", "equalize", "invert"}
    assert len(CIFAR10_POLICY) == 25
    for pair in CIFAR10_POLICY:
        assert len(pair) == 2
        for probability, name, level in pair:
            assert 0 <= probability <= 1 and name in names and 0 <= level <= 9


def test_the_policy_is_the_authors_cifar10_policy():
    """Pinned to the 25 sub-policies of ``CIFAR10Policy`` in the authors' ``autoaugment.py``
    (lupalab/Meta-Neighborhoods, commit f1fddad): the CIFAR-10 policy of Cubuk et al. 2019, in their order, written
    here as operation, probability, level."""
    authors = """invert 0.1 7, contrast 0.2 6; rotate 0.7 2, translate_x 0.3 9; sharpness 0.8 1, sharpness 0.9 3;
        shear_y 0.5 8, translate_y 0.7 9; autocontrast 0.5 8, equalize 0.9 2; shear_y 0.2 7, posterize 0.3 7;
        color 0.4 3, brightness 0.6 7; sharpness 0.3 9, brightness 0.7 9; equalize 0.6 5, equalize 0.5 1;
        contrast 0.6 7, sharpness 0.6 5; color 0.7 7, translate_x 0.5 8; equalize 0.3 7, autocontrast 0.4 8;
        translate_y 0.4 3, sharpness 0.2 6; brightness 0.9 6, color 0.2 8; solarize 0.5 2, invert 0.0 3;
        equalize 0.2 0, autocontrast 0.6 0; equalize 0.2 8, equalize 0.8 4; color 0.9 9, equalize 0.6 6;
        autocontrast 0.8 4, solarize 0.2 8; brightness 0.1 3, color 0.7 0; solarize 0.4 5, autocontrast 0.9 3;
        translate_y 0.9 9, translate_y 0.7 9; autocontrast 0.9 2, solarize 0.8 3; equalize 0.8 8, invert 0.1 3;
        translate_y 0.7 9, autocontrast 0.9 1"""
    expected = tuple(tuple((float(p), name, int(level)) for name, p, level in map(str.split, pair.split(",")))
                     for pair in authors.split(";"))
    assert CIFAR10_POLICY == expected


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("name", sorted(set(MAGNITUDES) | {"autocontrast", "equalize", "invert"}))
def test_every_operation_keeps_size_and_mode_and_changes_the_image(mode, name):
    array = np.random.default_rng(1).integers(40, 200, (32, 32) if mode == "L" else (32, 32, 3), dtype=np.uint8)
    image = Image.fromarray(array)
    out = _operate(image, name, 9, -1)
    assert out.size == image.size and out.mode == image.mode
    grey_colour = mode == "L" and name == "color"  # saturation of a grey image: nothing to change
    assert np.array_equal(np.asarray(out), array) == grey_colour


@pytest.mark.parametrize("channels", [1, 3])
def test_paper_augment_is_uint8_of_the_same_shape_and_reproducible(channels):
    x = images(channels)
    first = paper_augment(x, torch.Generator().manual_seed(3))
    again = paper_augment(x, torch.Generator().manual_seed(3))
    other = paper_augment(x, torch.Generator().manual_seed(4))
    assert first.dtype == torch.uint8 and first.shape == x.shape
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_autoaugment_draws_only_from_the_generator_it_is_given():
    x = images(3)
    torch.manual_seed(0)
    first = autoaugment(x, np.random.default_rng(5))
    torch.manual_seed(1)
    np.random.seed(1)
    assert torch.equal(first, autoaugment(x, np.random.default_rng(5)))


def test_cutout_zeroes_one_clipped_square_around_a_pixel_and_nothing_else():
    x = torch.full((200, 1, 32, 32), 7, dtype=torch.uint8)
    out = cutout(x, torch.Generator().manual_seed(0))
    for image in out[:, 0]:
        rows, columns = torch.nonzero(image == 0, as_tuple=True)
        assert 0 < len(rows) <= 16 * 16
        height, width = rows.max() - rows.min() + 1, columns.max() - columns.min() + 1
        assert len(rows) == height * width and height <= 16 and width <= 16  # one rectangle
        assert (image[image != 0] == 7).all()
    corners = [(out[:, 0, :8, :8] == 0).any(), (out[:, 0, -8:, -8:] == 0).any()]
    assert all(corners)  # squares reach the borders, clipped


@pytest.mark.parametrize("name", ["brightness", "contrast"])
def test_an_enhancement_goes_both_ways_with_its_sign(name):
    """1 - m for sign -1, 1 + m for +1: darker and brighter (less and more contrast), not the same way twice."""
    array = np.random.default_rng(2).integers(60, 190, (16, 16, 3), dtype=np.uint8)
    spread = {"brightness": np.mean, "contrast": np.std}[name]
    down, up = (spread(np.asarray(_operate(Image.fromarray(array), name, 5, sign), dtype=float)) for sign in (-1, 1))
    assert down < spread(array.astype(float)) < up


@pytest.mark.parametrize("sign", [1, -1])
def test_a_translation_moves_by_its_share_of_its_own_side_in_the_direction_of_its_sign(sign):
    """translate_y shifts by m x height (here not the width), up for sign +1 and down for -1, as PIL's affine map
    reads the pixel at y + sign * m * height."""
    array = np.full((40, 20), 50, dtype=np.uint8)
    array[20] = 255  # a white row in the middle of a tall image
    moved = np.asarray(_operate(Image.fromarray(array), "translate_y", 9, sign))
    shift = 40 * MAGNITUDES["translate_y"][1]  # about 18 rows at level 9
    (row,) = np.flatnonzero(moved[:, 10] == 255)
    assert abs(row - (20 - sign * shift)) <= 1


def _crop_offsets(images, out):
    """(top, left, flipped) of each crop, found among the 81 windows of the padded image (and their mirrors)."""
    found = []
    for original, crop in zip(images, out):
        padded = torch.nn.functional.pad(original, (4, 4, 4, 4))
        hits = [(i, j, f) for i in range(9) for j in range(9) for f in (False, True)
                if torch.equal(crop, padded[:, i:i + 32, j:j + 32].flip(2) if f else padded[:, i:i + 32, j:j + 32])]
        assert len(hits) == 1
        found.append(hits[0])
    return found


def test_crop_flip_flips_about_half_and_draws_rows_and_columns_apart():
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (64, 3, 32, 32), dtype=np.uint8))
    found = _crop_offsets(images, crop_flip(images, torch.Generator().manual_seed(0)))
    assert 16 <= sum(f for _, _, f in found) <= 48  # each image flipped with p = 0.5
    assert sum(i != j for i, j, _ in found) > 32  # top and left are separate draws


def test_the_crop_takes_every_offset_from_0_to_twice_the_padding():
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (300, 1, 32, 32), dtype=np.uint8))
    found = _crop_offsets(images, crop_flip(images, torch.Generator().manual_seed(1)))
    assert {i for i, _, _ in found} == set(range(9)) == {j for _, j, _ in found}


def test_autoaugment_turns_its_signed_operations_both_ways(monkeypatch):
    """Rotations, shears and translations go either way (the authors' policy drew one sign only)."""
    signs = []
    monkeypatch.setattr(augmentation, "_operate", lambda image, name, level, sign: signs.append(sign) or
                        _operate(image, name, level, sign))
    autoaugment(torch.from_numpy(np.random.default_rng(0).integers(0, 256, (60, 3, 8, 8), dtype=np.uint8)),
                np.random.default_rng(0))
    assert set(signs) == {1, -1}


def _steps(x, seed, auto):
    generator = torch.Generator().manual_seed(seed)
    cropped = crop_flip(x, generator)
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
    return cutout(autoaugment(cropped, rng) if auto else cropped, generator)


def test_paper_augment_is_crop_flip_then_autoaugment_then_cutout():
    """The authors' pipeline in its order, every step drawing from the one generator. A pipeline that dropped
    AutoAugment is still uint8, reproducible and seed-dependent, which is all the other tests ask."""
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (16, 3, 32, 32), dtype=np.uint8))
    got = paper_augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(got, _steps(x, 3, auto=True))
    assert not torch.equal(got, _steps(x, 3, auto=False))  # AutoAugment changed some of the 16 images
