"""Image data sets: real MNIST/digits files, tiny synthetic files in every other format, and ImageBatches."""

import dataclasses
import gzip
import io
import json
import os
import pickle
import re
import shutil
import tarfile
import tracemalloc
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from meta_neighborhoods.datasets import files, image_formats, images
from meta_neighborhoods.datasets.batches import ImageBatches
from meta_neighborhoods.datasets.files import DataFileError
from meta_neighborhoods.datasets.image_formats import _stratified_split, read_idx
from meta_neighborhoods.datasets.images import (
    IMAGE_DATASETS,
    ImageSplit,
    available_image_datasets,
    load_image_dataset,
)
from meta_neighborhoods.io import sha256
from meta_neighborhoods.validation import ConfigError
from helpers import SHARED, needs_shared

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # shared/data/mnist/PROVENANCE.md
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _random_rgb(rng, size=(8, 8)):
    return rng.integers(0, 256, (*size, 3), dtype=np.uint8)


def _write_png_tree(root, classes, per_class, rng, size=(8, 8), suffix=".png"):
    """``root/<class>/<i>.png`` with random pixels; returns {path: pixels} to compare with the loader."""
    written = {}
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            pixels = _random_rgb(rng, size)
            Image.fromarray(pixels).save(root / c / f"{i}{suffix}")
            written[root / c / f"{i}{suffix}"] = pixels
    return written


def _idx_bytes(array: np.ndarray) -> bytes:
    magic = {1: 2049, 3: 2051}[array.ndim]
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx_set(folder, rng, n_train=6, n_test=4, gz=True, size=5):
    """A Fashion-MNIST-like set: the four MNIST names, random size x size images, labels 0..2."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for stem_images, stem_labels, n in [("train-images-idx3-ubyte", "train-labels-idx1-ubyte", n_train),
                                        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", n_test)]:
        arrays[stem_images] = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        arrays[stem_labels] = np.arange(n, dtype=np.uint8) % 3
    for stem, array in arrays.items():
        data = _idx_bytes(array)
        (folder / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(data) if gz else data)
    return arrays


# --- registry -----------------------------------------------------------------------------------------


def test_registry_and_unknown_name():
    assert available_image_datasets() == [
        "mnist", "idx", "digits", "cifar10", "cifar100", "svhn", "cinic10", "tiny_imagenet", "mnist_m", "pacs",
        "imagenet",
    ]
    with pytest.raises(ValueError, match=r"unknown image data set 'cifar11'.*mnist.*imagenet"):
        load_image_dataset("cifar11")


def test_unknown_option_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"mnist keeps its own image size: --image-size \(image_size\) resizes "
                                         "cinic10, tiny_imagenet, pacs, imagenet only"):
        load_image_dataset("mnist", data_dir=tmp_path, image_size=32)
    with pytest.raises(ValueError, match=r"pacs: unknown option\(s\) \['size'\]; this data set accepts \['image_size'\]"):
        load_image_dataset("pacs", data_dir=tmp_path, size=32)


# --- IDX / MNIST --------------------------------------------------------------------------------------


@needs_shared
def test_read_idx_on_real_mnist_headers():
    labels = read_idx(SHARED / "mnist" / "t10k-labels-idx1-ubyte.gz")
    pixels = read_idx(SHARED / "mnist" / "t10k-images-idx3-ubyte.gz")
    assert labels.shape == (10000,) and pixels.shape == (10000, 28, 28) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels), MNIST_TEST_COUNTS)


@needs_shared
def test_mnist_shapes_counts_and_stats():
    data = load_image_dataset("mnist")
    assert data.train.images.shape == (60000, 1, 28, 28) and data.test.images.shape == (10000, 1, 28, 28)
    assert data.train.labels.dtype == np.int64 and data.classes == [str(i) for i in range(10)]
    np.testing.assert_array_equal(np.bincount(data.train.labels), MNIST_TRAIN_COUNTS)
    np.testing.assert_array_equal(np.bincount(data.test.labels), MNIST_TEST_COUNTS)
    assert data.mean == pytest.approx((0.1307,), abs=1e-4) and data.std == pytest.approx((0.3081,), abs=1e-4)
    assert data.augment == "none"


def test_read_idx_plain_and_gzipped(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "plain").write_bytes(_idx_bytes(array))
    (tmp_path / "packed").write_bytes(gzip.compress(_idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(tmp_path / "plain"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "packed"), array)


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:-5], "truncated"),
    (lambda data: data[:10], "truncated IDX header"),
    (lambda data: (2052).to_bytes(4, "big") + data[4:], "unknown IDX magic number 2052"),
    (lambda data: data + b"\0", "longer than its header"),
])
def test_read_idx_damaged_files_name_the_file(tmp_path, damage, message):
    path = tmp_path / "damaged-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(damage(_idx_bytes(np.zeros((2, 3, 3), dtype=np.uint8)))))
    with pytest.raises(ValueError, match=message) as error:
        read_idx(path)
    assert str(path) in str(error.value)


def test_read_idx_truncated_gzip_stream(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(_idx_bytes(np.zeros((50, 9, 9), dtype=np.uint8)))[:-12])
    with pytest.raises(ValueError, match="cut.gz.*truncated or corrupt"):
        read_idx(path)


def test_idx_loader_reads_any_idx_set_without_checksum(tmp_path):
    rng = np.random.default_rng(0)
    arrays = _write_idx_set(tmp_path, rng, gz=False)
    data = load_image_dataset("idx", data_dir=tmp_path)
    np.testing.assert_array_equal(data.train.images[:, 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(data.test.labels, arrays["t10k-labels-idx1-ubyte"])
    assert data.classes == ["0", "1", "2"] and data.train.images.shape == (6, 1, 5, 5)


def test_a_data_file_found_in_a_data_folder_is_not_read_through_a_link(tmp_path):
    """The link could lead anywhere on the machine; the folder given is where the data set is read from."""
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    _write_idx_set(data, np.random.default_rng(0), gz=False)
    _write_idx_set(elsewhere, np.random.default_rng(1), gz=False)
    (data / "t10k-labels-idx1-ubyte").unlink()
    (data / "t10k-labels-idx1-ubyte").symlink_to(elsewhere / "t10k-labels-idx1-ubyte")
    with pytest.raises(DataFileError, match=r"idx: .*data/t10k-labels-idx1-ubyte leads outside the data folder"):
        load_image_dataset("idx", data_dir=data)
    linked_folder = tmp_path / "linked"
    linked_folder.symlink_to(elsewhere, target_is_directory=True)  # the folder itself: the user's choice
    assert len(load_image_dataset("idx", data_dir=linked_folder).test.labels) == 4
    _write_idx_set(tmp_path / "gzipped", np.random.default_rng(2))
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "mnist").symlink_to(tmp_path / "gzipped", target_is_directory=True)  # a set's folder in it
    with pytest.raises(DataFileError, match=r"mnist: .*mnist/mnist/train-images-idx3-ubyte.gz leads outside"):
        load_image_dataset("mnist", data_dir=tmp_path / "mnist")


def test_a_data_sets_folder_that_leads_outside_the_data_folder_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "meta").write_bytes(pickle.dumps({b"fine_label_names": [b"a", b"b"]}, protocol=2))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cifar-100-python").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(DataFileError, match=r"cifar100: .*cifar-100-python/meta leads outside the data folder"):
        load_image_dataset("cifar100", data_dir=tmp_path / "data")


def test_images_that_are_all_one_value_are_refused_before_training(tmp_path):
    """All-zero images trained to a NaN loss: normalising by a standard deviation of 0."""
    _write_idx_set(tmp_path, np.random.default_rng(0), gz=False)
    zeros = np.zeros((6, 5, 5), np.uint8)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(zeros))
    with pytest.raises(ValueError, match="idx: channel 0 of every training image is the same value \\(0\\)"):
        load_image_dataset("idx", data_dir=tmp_path)


def test_classify_trains_on_any_idx_set(tmp_path, capsys):
    """``classify --dataset idx --data-dir DIR``: a 3-class set in MNIST's file layout, no checksum, one epoch."""
    from meta_neighborhoods.cli import main

    data = tmp_path / "my-idx-set"
    _write_idx_set(data, np.random.default_rng(0), n_train=30, n_test=9, size=8)
    out = tmp_path / "run"
    argv = ["classify", "--dataset", "idx", "--data-dir", str(data), "--backbone", "convnet4", "--method", "mn",
            "--epochs", "1", "--batch-size", "8", "--out", str(out), "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "idx" and metrics["images"] == {"train": 27, "validation": 3, "test": 9}
    assert len(metrics["history"]) == 1 and np.isfinite(metrics["history"][0]["loss"])
    assert metrics["config"]["model"]["num_classes"] == 3 and 0.0 <= metrics["test_accuracy"] <= 1.0
    record = json.loads((out / "run.json").read_text())
    assert record["classes"] == ["0", "1", "2"] and record["input"]["height"] == record["input"]["width"] == 8
    assert re.fullmatch(r"idx / convnet4 / mn: test accuracy \d\.\d{4} \(best validation accuracy \d\.\d{4} at "
                        r"epoch 1\); trained in \d+\.\d s\n", capsys.readouterr().out)


def test_mnist_refuses_other_idx_files(tmp_path):
    _write_idx_set(tmp_path / "mnist", np.random.default_rng(0))
    with pytest.raises(DataFileError, match=r"mnist: .*has sha256 .*expected"):
        load_image_dataset("mnist", data_dir=tmp_path)


def test_mnist_missing_folder_says_where_to_put_it(tmp_path):
    with pytest.raises(DataFileError, match=r"mnist: missing data file .*mnist/.*--data-dir DIR"):
        load_image_dataset("mnist", data_dir=tmp_path)


# --- digits -------------------------------------------------------------------------------------------


def test_digits_shapes_scaling_and_stratified_split():
    data = load_image_dataset("digits")
    train, test = data.train, data.test
    assert train.images.shape[1:] == (1, 8, 8) and len(train) + len(test) == 1797
    assert train.images.max() == 255 and set(np.unique(train.images)) <= {round(k * 255 / 16) for k in range(17)}
    per_class = np.bincount(train.labels) + np.bincount(test.labels)
    np.testing.assert_array_equal(np.bincount(test.labels), np.rint(0.2 * per_class))
    again = load_image_dataset("digits")
    np.testing.assert_array_equal(again.test.images, test.images)  # the fixed seed gives the same split


def test_digits_need_no_data_folder(tmp_path, monkeypatch):
    """scikit-learn ships them: no ../shared/data, no --data-dir (or one that holds something else)."""
    monkeypatch.setattr(files, "shared_data_dir", lambda: None)
    monkeypatch.delenv("META_NEIGHBORHOODS_DATA", raising=False)
    data = load_image_dataset("digits")
    elsewhere = load_image_dataset("digits", data_dir=tmp_path)
    np.testing.assert_array_equal(data.train.images, elsewhere.train.images)
    assert len(data.train) + len(data.test) == 1797 and data.classes == [str(i) for i in range(10)]


@needs_shared
def test_digits_from_scikit_learn_are_the_file_the_results_were_computed_on():
    """The same 1797 rows as sklearn_digits/digits.csv.gz (the file the earlier runs read), so the same split."""
    raw = np.loadtxt(SHARED / "sklearn_digits" / "digits.csv.gz", delimiter=",")
    data = load_image_dataset("digits")
    train, test = _stratified_split(raw[:, 64].astype(np.int64), 0.2, images.DIGITS_SPLIT_SEED)
    np.testing.assert_array_equal(data.test.labels, raw[test, 64])
    np.testing.assert_array_equal(data.train.images.reshape(len(train), 64), np.rint(raw[train, :64] * 255 / 16))


# --- CIFAR-10 JPEG tarballs and their cache ---------------------------------------------------------


def _write_jpeg_tarball(path, split, classes, per_class, rng) -> dict:
    """The tarball, and each image as its JPEG decodes (C, H, W) by (class, index)."""
    written = {}
    with tarfile.open(path, "w:gz") as tar:
        for c in classes:
            for i in range(per_class):
                buffer = io.BytesIO()
                Image.fromarray(_random_rgb(rng, (32, 32))).save(buffer, format="JPEG")
                info = tarfile.TarInfo(f"{split}/{c}/{i:04d}.jpg")
                info.size = buffer.tell()
                buffer.seek(0)
                tar.addfile(info, buffer)
                written[c, i] = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")).transpose(2, 0, 1)
    return written


@pytest.fixture
def tiny_cifar(tmp_path, monkeypatch):
    """Two tiny tarballs in the CIFAR-10 layout, registered under ``cifar10`` with their own checksums; the data and
    cache folders, and the training images as written."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "cifar10_jpg"
    folder.mkdir(parents=True)
    classes = ["truck", "airplane", "cat"]  # written out of order: the loader must sort them
    written = _write_jpeg_tarball(folder / "cifar10_jpg_train.tar.gz", "train", classes, 3, rng)
    _write_jpeg_tarball(folder / "cifar10_jpg_test.tar.gz", "test", classes, 2, rng)
    checksums = {split: sha256(folder / f"cifar10_jpg_{split}.tar.gz") for split in ("train", "test")}
    spec = IMAGE_DATASETS["cifar10"]
    patched = dataclasses.replace(spec, options={**spec.options, "checksums": checksums})
    monkeypatch.setitem(IMAGE_DATASETS, "cifar10", patched)
    return tmp_path / "data", tmp_path / "cache", written


def test_cifar10_tarball_is_decoded_once_then_read_from_cache(tiny_cifar, monkeypatch):
    data_dir, cache_dir, written = tiny_cifar
    first = load_image_dataset("cifar10", data_dir=data_dir, cache_dir=cache_dir)
    assert first.classes == ["airplane", "cat", "truck"] and first.augment == "crop_flip"
    assert first.train.images.shape == (9, 3, 32, 32) and first.test.images.shape == (6, 3, 32, 32)
    np.testing.assert_array_equal(first.train.labels, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    expected = [written[c, i] for c in ("airplane", "cat", "truck") for i in range(3)]
    np.testing.assert_array_equal(first.train.images, np.stack(expected))  # each image decoded, beside its label
    assert sorted(p.name.split("-")[0] for p in cache_dir.iterdir()) == ["cifar10_jpg_test", "cifar10_jpg_train"]

    def no_tarball(*args, **kwargs):
        raise AssertionError("the tarball was opened although the cache exists")

    monkeypatch.setattr(image_formats.tarfile, "open", no_tarball)
    second = load_image_dataset("cifar10", data_dir=data_dir, cache_dir=cache_dir)
    np.testing.assert_array_equal(second.train.images, first.train.images)
    np.testing.assert_array_equal(second.test.labels, first.test.labels)
    assert second.classes == first.classes and second.mean == first.mean


def test_cifar10_cache_dir_from_environment(tiny_cifar, monkeypatch):
    data_dir, cache_dir, _ = tiny_cifar
    monkeypatch.setenv("META_NEIGHBORHOODS_CACHE", str(cache_dir / "env"))
    load_image_dataset("cifar10", data_dir=data_dir)
    assert len(list((cache_dir / "env").glob("*.npz"))) == 2 and not list((cache_dir / "env").glob("*.tmp"))


def test_cifar10_wrong_checksum_is_refused(tiny_cifar, monkeypatch):
    data_dir, cache_dir, _ = tiny_cifar
    spec = IMAGE_DATASETS["cifar10"]
    monkeypatch.setitem(IMAGE_DATASETS, "cifar10", dataclasses.replace(
        spec, options={**spec.options, "checksums": images.CIFAR10_JPG_SHA256}))
    with pytest.raises(DataFileError, match="cifar10: .*cifar10_jpg_train.tar.gz has sha256"):
        load_image_dataset("cifar10", data_dir=data_dir, cache_dir=cache_dir)


def _npy(array: np.ndarray) -> bytes:
    """What np.save writes of ``array``."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


UNREADABLE = r"{cached} cannot be read as the decoded split it caches \(\w+\); remove it to decode the data again$"
DECLARED = r"{cached} is not a decoded image split of at most 100000 images of 3 x 32 x 32 bytes"
CLASSES = np.array(["a", "b"])


@pytest.mark.parametrize("damage, message", [
    (lambda path: np.savez(path, labels=np.zeros(9, np.int64)), DECLARED),  # no images: a KeyError in the reader
    (lambda path: path.write_bytes(b"PK\x03\x04 not a zip"), UNREADABLE),  # zipfile.BadZipFile
    (lambda path: path.write_bytes(b"\x00" * 40), UNREADABLE),  # numpy's own ValueError, which names no file
    (lambda path: path.write_bytes(_npy(np.zeros(3))), UNREADABLE),  # one array, np.save's, under the .npz name
    (lambda path: np.savez_compressed(path, images=np.zeros((5, 3, 256, 256), np.uint8), labels=np.zeros(5, np.int64),
                                      classes=CLASSES), DECLARED),  # 1 MB in memory, for each 2 kB of file
    (lambda path: np.savez_compressed(path, images=np.zeros((100_001, 1, 1, 1), np.uint8),
                                      labels=np.zeros(100_001, np.int64), classes=CLASSES), DECLARED),
    (lambda path: np.savez_compressed(path, images=np.zeros((5, 3, 32, 32), np.uint8), labels=np.zeros(4, np.int64),
                                      classes=CLASSES), DECLARED),
    (lambda path: np.savez_compressed(path, images=np.zeros((5, 1, 32, 32), np.uint8), labels=np.zeros(5, np.int64),
                                      classes=CLASSES), DECLARED),  # was taken: no CIFAR-10 image has one channel
    (lambda path: np.savez_compressed(path, images=np.zeros((5, 3, 32, 32), np.uint8), labels=np.zeros(5, np.int64),
                                      classes=np.array(["a", "a"])), r"{cached} names its classes \['a', 'a'\], not "
                                                                     "once each; remove it"),  # was taken, and exported
])
def test_a_damaged_cache_is_refused_in_one_line_naming_the_data_set_and_the_cache_file(tiny_cifar, damage, message):
    data_dir, cache_dir, _ = tiny_cifar
    load_image_dataset("cifar10", data_dir=data_dir, cache_dir=cache_dir)
    (cached,) = cache_dir.glob("cifar10_jpg_train-*.npz")
    damage(cached)
    with pytest.raises(DataFileError, match="cifar10: " + message.format(data_dir=data_dir, cache_dir=cache_dir,
                                                                         cached=cached)):
        load_image_dataset("cifar10", data_dir=data_dir, cache_dir=cache_dir)


def test_an_unwritable_cache_folder_is_the_systems_error_not_a_damaged_data_file(tiny_cifar, tmp_path):
    data_dir, _, _ = tiny_cifar
    (tmp_path / "a_file").write_text("")
    with pytest.raises(NotADirectoryError) as error:
        load_image_dataset("cifar10", data_dir=data_dir, cache_dir=tmp_path / "a_file" / "cache")
    assert not isinstance(error.value, DataFileError)


def test_cifar10_missing_tarball_says_where_to_put_it(tmp_path):
    with pytest.raises(DataFileError, match=r"cifar10: missing data file .*cifar10_jpg_train.tar.gz.*--data-dir"):
        load_image_dataset("cifar10", data_dir=tmp_path, cache_dir=tmp_path)


# --- other formats, each on a tiny synthetic file -----------------------------------------------------


def test_cifar100_python_pickles(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    pixels = {s: rng.integers(0, 256, (n, 3072), dtype=np.uint8) for s, n in (("train", 5), ("test", 3))}
    for split, data in pixels.items():
        with open(root / split, "wb") as f:
            pickle.dump({b"data": data, b"fine_labels": list(range(len(data))), b"coarse_labels": [0] * len(data)}, f)
    with open(root / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [b"apple", b"bee", b"cup", b"dog", b"egg"]}, f)
    data = load_image_dataset("cifar100", data_dir=tmp_path)
    assert data.classes == ["apple", "bee", "cup", "dog", "egg"] and data.augment == "crop_flip"
    np.testing.assert_array_equal(data.train.images, pixels["train"].reshape(5, 3, 32, 32))
    np.testing.assert_array_equal(data.test.labels, [0, 1, 2])


def test_cifar10_reads_the_official_python_version_where_it_is_there(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    batches = {f"data_batch_{i}": rng.integers(0, 256, (2, 3072), dtype=np.uint8) for i in range(1, 6)}
    batches["test_batch"] = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    for file, data in batches.items():
        (root / file).write_bytes(pickle.dumps({b"data": data, b"labels": [i % 3 for i in range(len(data))],
                                                b"batch_label": b"x", b"filenames": [b"f"] * len(data)}, protocol=2))
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane", b"bird", b"cat"]}, protocol=2))
    data = load_image_dataset("cifar10", data_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert data.classes == ["airplane", "bird", "cat"] and data.augment == "crop_flip"
    train = np.concatenate([batches[f"data_batch_{i}"] for i in range(1, 6)]).reshape(10, 3, 32, 32)
    np.testing.assert_array_equal(data.train.images, train)  # the official pixels, in batch order
    np.testing.assert_array_equal(data.test.labels, [0, 1, 2])
    assert not (tmp_path / "cache").exists()  # nothing to decode, nothing cached
    (root / "data_batch_3").unlink()
    with pytest.raises(DataFileError, match=r"cifar10: missing data file .*data_batch_3"):
        load_image_dataset("cifar10", data_dir=tmp_path)


def test_svhn_mat_files_map_label_10_to_digit_0(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (32, 32, 3, 4), dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": X, "y": np.array([[10], [1], [5], [10]], dtype=np.uint8)})
    savemat(tmp_path / "test_32x32.mat", {"X": X[..., :2], "y": np.array([[3], [10]], dtype=np.uint8)})
    data = load_image_dataset("svhn", data_dir=tmp_path)
    np.testing.assert_array_equal(data.train.labels, [0, 1, 5, 0])
    np.testing.assert_array_equal(data.train.images[2], X[..., 2].transpose(2, 0, 1))
    assert data.test.images.shape == (2, 3, 32, 32)


@pytest.mark.parametrize("train, message", [
    ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1.5], [2]])}, "labels 1..10"),
    ({"X": np.zeros((32, 32, 3, 2), np.uint8)}, r"got \{'X': \(32, 32, 3, 2\)\}"),
    ({"X": np.zeros((32, 32, 3, 100_001), np.uint8), "y": np.ones((100_001, 1), np.uint8)}, "N at most 100000"),
])
def test_svhn_files_are_checked_by_what_they_declare_before_they_are_read(tmp_path, train, message):
    """A 2 MB compressed file declaring 700,000 images inflated to 2 GB; a label 1.5 was truncated to 1."""
    from scipy.io import savemat

    savemat(tmp_path / "train_32x32.mat", train, do_compression=True)
    savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 1), np.uint8), "y": np.ones((1, 1))})
    with pytest.raises(ValueError, match=f"svhn: .*train_32x32.mat should hold .*{message}"):
        load_image_dataset("svhn", data_dir=tmp_path)


@pytest.mark.parametrize("name, folder, test_split", [
    ("cinic10", "cinic10", "test"), ("pacs", "pacs", "test"), ("imagenet", "imagenet", "val"),
])
def test_image_folder_formats(tmp_path, name, folder, test_split):
    rng = np.random.default_rng(0)
    written = _write_png_tree(tmp_path / folder / "train", ["b", "a"], 2, rng)
    _write_png_tree(tmp_path / folder / test_split, ["a", "b"], 1, rng)
    options = {"image_size": None} if name == "imagenet" else {}
    data = load_image_dataset(name, data_dir=tmp_path, **options)
    assert data.classes == ["a", "b"] and data.train.images.shape == (4, 3, 8, 8) and len(data.test) == 2
    first = written[tmp_path / folder / "train" / "a" / "0.png"]
    np.testing.assert_array_equal(data.train.images[0], first.transpose(2, 0, 1))
    np.testing.assert_array_equal(data.train.labels, [0, 0, 1, 1])


def test_imagenet_is_resized_to_32_by_default(tmp_path):
    rng = np.random.default_rng(0)
    _write_png_tree(tmp_path / "train", ["x", "y"], 1, rng, size=(48, 64))
    _write_png_tree(tmp_path / "val", ["x"], 1, rng, size=(40, 40))
    assert load_image_dataset("imagenet", data_dir=tmp_path).train.images.shape == (2, 3, 32, 32)
    assert load_image_dataset("imagenet", data_dir=tmp_path, image_size=16).test.images.shape == (1, 3, 16, 16)


def test_folder_of_mixed_sizes_asks_for_image_size(tmp_path):
    rng = np.random.default_rng(0)
    _write_png_tree(tmp_path / "pacs" / "train", ["a"], 1, rng, size=(8, 8))
    _write_png_tree(tmp_path / "pacs" / "train" / "b", ["c"], 1, rng, size=(9, 9))
    _write_png_tree(tmp_path / "pacs" / "test", ["a"], 1, rng)
    with pytest.raises(ValueError, match="pacs: images differ in size.*--image-size resizes cinic10, tiny_imagenet, pacs and imagenet$"):
        load_image_dataset("pacs", data_dir=tmp_path)
    assert load_image_dataset("pacs", data_dir=tmp_path, image_size=8).train.images.shape == (2, 3, 8, 8)


def test_folder_test_class_unknown_to_train_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    _write_png_tree(tmp_path / "train", ["a"], 1, rng)
    _write_png_tree(tmp_path / "test", ["z"], 1, rng)
    with pytest.raises(ValueError, match=r"cinic10: images of class\(es\) \['z'\]"):
        load_image_dataset("cinic10", data_dir=tmp_path)


def test_folder_format_missing_says_where_to_put_it(tmp_path):
    with pytest.raises(DataFileError, match=r"cinic10: missing .*cinic10/train.*--data-dir DIR"):
        load_image_dataset("cinic10", data_dir=tmp_path)


def test_tiny_imagenet_layout(tmp_path, caplog):
    rng = np.random.default_rng(0)
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n02", "n01"]  # the order of wnids.txt is the class order
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for wnid in wnids:
        _write_png_tree(root / "train" / wnid, ["images"], 2, rng, suffix=".JPEG")
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("ignored\n")
    lines = []
    for i, wnid in enumerate(["n01", "n02", "n01"]):
        Image.fromarray(_random_rgb(rng)).save(root / "val" / "images" / f"val_{i}.JPEG", format="JPEG")
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t8\t8")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (root / "train" / "n03").mkdir()  # a class folder that holds no image: said, with the files left out
    with caplog.at_level("INFO", logger="meta_neighborhoods"):
        data = load_image_dataset("tiny_imagenet", data_dir=tmp_path, image_size=4)
    assert data.classes == wnids and data.train.images.shape == (4, 3, 4, 4)
    np.testing.assert_array_equal(data.test.labels, [0, 1, 1])  # n02 first, then the two n01 images
    assert f"{root / 'train'}: left out 2 file(s) not named as images (n01/n01_boxes.txt, ...); 1 folder(s) without " \
        "images, which are no class: n03" in caplog.text


def _tiny_imagenet(tmp_path, wnids: bytes = b"n1\nn2\n", annotations: str = "val_0.JPEG\tn1\nval_1.JPEG\tn2\n"):
    """A ``tiny-imagenet-200/`` of two classes, two training and two validation images of 4 x 4."""
    rng = np.random.default_rng(0)
    root = tmp_path / "tiny-imagenet-200"
    for wnid in ("n1", "n2"):
        _write_png_tree(root / "train" / wnid, ["images"], 1, rng, size=(4, 4))
    _write_png_tree(root / "val", ["images"], 2, rng, size=(4, 4))
    for i in range(2):
        (root / "val" / "images" / f"{i}.png").rename(root / "val" / "images" / f"val_{i}.JPEG")
    (root / "wnids.txt").write_bytes(wnids)
    (root / "val" / "val_annotations.txt").write_text(annotations)
    return root


def test_a_tiny_imagenet_annotation_without_a_class_names_its_file_and_line(tmp_path):
    root = _tiny_imagenet(tmp_path, annotations="val_0.JPEG\tn1\t0\t0\t4\t4\n\nval_1.JPEG\n")
    assert load_image_dataset("tiny_imagenet", data_dir=_tiny_imagenet(tmp_path / "ok")).test.labels.tolist() == [0, 1]
    listing = re.escape(str(root / "val" / "val_annotations.txt"))
    with pytest.raises(ValueError, match=f"tiny_imagenet: {listing} line 3 should be 'name<tab>label<tab>...', got "
                                         "'val_1.JPEG'$"):
        load_image_dataset("tiny_imagenet", data_dir=tmp_path)


def test_a_class_named_twice_in_wnids_is_refused(tmp_path):
    root = _tiny_imagenet(tmp_path, wnids=b"n1\nn2\nn1\n")
    wnids = re.escape(str(root / "wnids.txt"))
    with pytest.raises(ValueError, match=f"tiny_imagenet: {wnids} names n1 more than once"):
        load_image_dataset("tiny_imagenet", data_dir=tmp_path)


def _mnist_m(tmp_path, train_labels: str):
    """An ``mnist_m/`` whose training list is ``train_labels`` (images 0.png, 1.png) and test list one line."""
    root = tmp_path / "mnist_m"
    for split in ("train", "test"):
        _write_png_tree(root, [f"mnist_m_{split}"], 2, np.random.default_rng(0))
        (root / f"mnist_m_{split}_labels.txt").write_text(train_labels if split == "train" else "0.png 1\n")
    return root / "mnist_m_train_labels.txt"


@pytest.mark.parametrize("name, setup, message", [
    ("mnist_m", lambda tmp: _mnist_m(tmp, "0.png 1\n1.png x\n"),
     "line 2 labels '1.png' 'x', which is not among the 10 classes (0, 1, 2, 3, 4, ...)"),
    ("mnist_m", lambda tmp: _mnist_m(tmp, "0.png 1\n1.png 10\n"), "line 2 labels '1.png' '10', which is not among"),
    ("mnist_m", lambda tmp: _mnist_m(tmp, "0.png 1\n1.png 2\n0.png 7\n"),
     "names '0.png' on line 3, an image line 1 names already: an image is listed once"),
    ("mnist_m", lambda tmp: _mnist_m(tmp, "0.png 1\n1.png 2\n./0.png 1\n"),
     "names './0.png' on line 3, an image line 1 names already"),
    ("tiny_imagenet", lambda tmp: _tiny_imagenet(tmp, annotations="val_0.JPEG\tn1\nval_1.JPEG\tn3\n") / "val" /
     "val_annotations.txt", "line 2 labels 'val_1.JPEG' 'n3', which is not among the 2 classes (n1, n2)"),
    ("tiny_imagenet", lambda tmp: _tiny_imagenet(tmp, annotations="val_0.JPEG\tn1\nval_1.JPEG\tn2\nval_0.JPEG\tn2\n")
     / "val" / "val_annotations.txt", "names 'val_0.JPEG' on line 3, an image line 1 names already"),
], ids=["text label", "label 10", "listed twice, two labels", "listed twice as ./", "unknown wnid",
        "val listed twice"])
def test_a_label_list_s_unknown_label_or_repeated_image_is_refused_naming_its_line(tmp_path, name, setup, message):
    """A repeated image counted twice (a test image scored twice, or a training image under two labels); a label
    that is no class was said without its file or line."""
    listing = setup(tmp_path)
    with pytest.raises(ValueError, match=f"^{name}: {re.escape(str(listing))} {re.escape(message)}"):
        load_image_dataset(name, data_dir=tmp_path)


def test_a_class_without_a_training_image_is_warned_of(tmp_path):
    _tiny_imagenet(tmp_path, wnids=b"n1\nn2\nn3\n")
    with pytest.warns(UserWarning, match=r"tiny_imagenet: 1 of its 3 classes have no training image \(n3\): the "
                                         "network cannot learn them"):
        load_image_dataset("tiny_imagenet", data_dir=tmp_path)


def _mnist_m_with_an_empty_train_list(tmp_path):
    root = tmp_path / "mnist_m"
    for split in ("train", "test"):
        _write_png_tree(root, [f"mnist_m_{split}"], 1, np.random.default_rng(0))
        (root / f"mnist_m_{split}_labels.txt").write_text(" \n\n" if split == "train" else "0.png 1\n")
    return root / "mnist_m_train_labels.txt"


def _cifar100_with_meta(tmp_path, meta: bytes):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    for split in ("train", "test"):
        (root / split).write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"fine_labels": [0]}))
    (root / "meta").write_bytes(meta)
    return root / "meta"


EMPTY = pickle.dumps({b"label_names": [], b"fine_label_names": []})


@pytest.mark.parametrize("name, setup, error, message", [
    ("tiny_imagenet", lambda tmp: _tiny_imagenet(tmp, wnids=b"") / "wnids.txt", ValueError, "lists no classes"),
    ("tiny_imagenet", lambda tmp: _tiny_imagenet(tmp, wnids=b" \n\t\n") / "wnids.txt", ValueError,
     "lists no classes"),
    ("tiny_imagenet", lambda tmp: _tiny_imagenet(tmp, annotations="\n") / "val" / "val_annotations.txt",
     DataFileError, "lists no images"),
    ("mnist_m", _mnist_m_with_an_empty_train_list, DataFileError, "lists no images"),
    ("cifar10", lambda tmp: _cifar10_folder(tmp, **{"batches.meta": EMPTY}) / "batches.meta", ValueError,
     "label_names lists no classes"),
    ("cifar100", lambda tmp: _cifar100_with_meta(tmp, EMPTY), ValueError, "fine_label_names lists no classes"),
], ids=["empty-wnids", "blank-wnids", "empty-val-annotations", "empty-mnist-m-list", "cifar10-meta", "cifar100-meta"])
def test_a_class_or_label_list_that_lists_nothing_is_named_in_one_line(tmp_path, name, setup, error, message):
    """Before, an empty wnids.txt was 'images of class(es) [...] not among the 0 known classes', an empty CIFAR meta
    'train labels fall outside 0..-1', an empty label list 'no images found': none named the file."""
    listing = setup(tmp_path)
    with pytest.raises(error, match=f"^{name}: {re.escape(str(listing))}:? {message}$"):
        load_image_dataset(name, data_dir=tmp_path, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("name, byte", [("tiny_imagenet", 3), ("mnist_m", 8)])
def test_a_class_or_label_list_that_is_not_utf8_is_named(tmp_path, name, byte):
    if name == "tiny_imagenet":
        listing = _tiny_imagenet(tmp_path, wnids=b"n1\n\xe9\n") / "wnids.txt"
    else:
        listing = tmp_path / "mnist_m" / "mnist_m_train_labels.txt"
        (tmp_path / "mnist_m" / "mnist_m_train").mkdir(parents=True)
        listing.write_bytes(b"0.png 0\n\xe9.png 1\n")
    with pytest.raises(ValueError, match=f"{name}: {re.escape(str(listing))} is not UTF-8 text \\(invalid "
                                         f"continuation byte at byte {byte}\\)$"):
        load_image_dataset(name, data_dir=tmp_path)


def test_mnist_m_layout(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "mnist_m"
    pixels = {}
    for split, labels in (("train", [3, 0, 3]), ("test", [9])):
        (root / f"mnist_m_{split}").mkdir(parents=True)
        lines = []
        for i, label in enumerate(labels):
            pixels[split, i] = _random_rgb(rng, (32, 32))
            Image.fromarray(pixels[split, i]).save(root / f"mnist_m_{split}" / f"{i:08d}.png")
            lines.append(f"{i:08d}.png {label}")
        (root / f"mnist_m_{split}_labels.txt").write_text("\n".join(lines) + "\n")
    data = load_image_dataset("mnist_m", data_dir=tmp_path)
    np.testing.assert_array_equal(data.train.labels, [0, 3, 3])
    np.testing.assert_array_equal(data.train.images[0], pixels["train", 1].transpose(2, 0, 1))
    assert data.test.images.shape == (1, 3, 32, 32) and data.classes == [str(i) for i in range(10)]


def test_a_label_list_may_start_with_a_byte_order_mark(tmp_path):
    root = tmp_path / "mnist_m"
    for split in ("train", "test"):
        _write_png_tree(root, [f"mnist_m_{split}"], 2, np.random.default_rng(0))
        (root / f"mnist_m_{split}_labels.txt").write_text("\ufeff0.png 1\n1.png 0\n", encoding="utf-8")
    assert load_image_dataset("mnist_m", data_dir=tmp_path).train.labels.tolist() == [0, 1]


def test_mnist_m_listed_image_missing(tmp_path):
    root = tmp_path / "mnist_m"
    (root / "mnist_m_train").mkdir(parents=True)
    (root / "mnist_m_train_labels.txt").write_text("00000000.png 1\n")
    with pytest.raises(DataFileError, match=r"mnist_m: missing image .*00000000.png.*--data-dir"):
        load_image_dataset("mnist_m", data_dir=tmp_path)


@pytest.mark.parametrize("listed", ["../../outside.png", "/tmp/outside.png", "link.png", "fifo.png", "folder.png"])
def test_mnist_m_reads_only_images_inside_its_folder(tmp_path, listed):
    root = tmp_path / "mnist_m"
    (root / "mnist_m_train" / "folder.png").mkdir(parents=True)
    outside = tmp_path / "outside.png"
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(outside)
    (root / "mnist_m_train" / "link.png").symlink_to(outside)
    os.mkfifo(root / "mnist_m_train" / "fifo.png")  # reading it would block forever
    (root / "mnist_m_train_labels.txt").write_text(f"{listed} 1\n")
    with pytest.raises(ValueError, match=f"mnist_m_train_labels.txt names '{listed}', which is not a file inside"):
        load_image_dataset("mnist_m", data_dir=tmp_path)


def test_an_image_folder_does_not_follow_symbolic_links(tmp_path):
    rng = np.random.default_rng(0)
    _write_png_tree(tmp_path / "pacs" / "train", ["a"], 1, rng)
    _write_png_tree(tmp_path / "pacs" / "test", ["a"], 1, rng)
    _write_png_tree(tmp_path / "elsewhere", ["b"], 1, rng)
    (tmp_path / "pacs" / "train" / "b").symlink_to(tmp_path / "elsewhere" / "b")
    with pytest.raises(ValueError, match=r"pacs: .*train/b is a symbolic link"):
        load_image_dataset("pacs", data_dir=tmp_path)
    (tmp_path / "pacs" / "train" / "b").unlink()
    shutil.rmtree(tmp_path / "pacs" / "test")
    (tmp_path / "pacs" / "test").symlink_to(tmp_path / "elsewhere")  # a split's folder: read through before
    with pytest.raises(ValueError, match=r"pacs: .*pacs/test is a symbolic link"):
        load_image_dataset("pacs", data_dir=tmp_path)


@pytest.mark.parametrize("kind, error, message", [
    ("folder", DataFileError, "is a folder, not an image file"),
    ("fifo", DataFileError, "is a named pipe \\(FIFO\\), not an image file"),
    ("link", ValueError, "is a symbolic link; image folders must hold the images themselves"),
])
def test_an_entry_of_an_image_folder_named_like_an_image_but_no_file_is_refused_not_skipped(tmp_path, kind, error,
                                                                                          message):
    """The set would silently miss an image (a FIFO would block its read): refused before any training. A link is
    refused wherever it points, as every link in an image folder is (here: to an image beside it)."""
    if kind == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("os.mkfifo is not available on this platform")
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        _write_png_tree(tmp_path / "pacs" / split, ["a", "b"], 1, rng)
    cat = tmp_path / "pacs" / "train" / "b" / "cat.png"
    {"folder": cat.mkdir, "fifo": lambda: os.mkfifo(cat), "link": lambda: cat.symlink_to(cat.parent / "0.png")}[kind]()
    with pytest.raises(error, match=f"^pacs: {re.escape(str(cat))} {message}") as refused:
        load_image_dataset("pacs", data_dir=tmp_path)
    assert "\n" not in str(refused.value)


def test_mnist_m_reads_no_split_folder_through_a_link(tmp_path):
    root = tmp_path / "mnist_m"
    root.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "outside.png")
    (root / "mnist_m_train").symlink_to(tmp_path, target_is_directory=True)
    (root / "mnist_m_train_labels.txt").write_text("outside.png 1\n")
    with pytest.raises(ValueError, match="mnist_m_train_labels.txt names 'outside.png', which is not a file inside"):
        load_image_dataset("mnist_m", data_dir=tmp_path)


@pytest.mark.parametrize("stem, labels, message", [
    ("train-labels-idx1-ubyte", [0, 1, 2, 0, 1, 255], "the training labels skip class 3 .*up to 255"),
    ("t10k-labels-idx1-ubyte", [0, 1, 2, 5], r"test labels \[5\] never occur in the training labels"),
])
def test_idx_labels_are_validated_not_trusted(tmp_path, stem, labels, message):
    _write_idx_set(tmp_path, np.random.default_rng(0))
    (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(_idx_bytes(np.array(labels, dtype=np.uint8))))
    with pytest.raises(ValueError, match=message):
        load_image_dataset("idx", data_dir=tmp_path)


def test_idx_images_of_size_zero_are_refused(tmp_path):
    _write_idx_set(tmp_path, np.random.default_rng(0))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros((6, 0, 0), np.uint8))))
    with pytest.raises(ValueError, match="train images of the IDX files are empty"):
        load_image_dataset("idx", data_dir=tmp_path)


# --- ImageBatches -------------------------------------------------------------------------------------


@pytest.fixture
def split():
    rng = np.random.default_rng(0)
    return ImageSplit(rng.integers(0, 256, (10, 3, 32, 32), dtype=np.uint8), np.arange(10, dtype=np.int64))


def _stats(split):
    scaled = split.images / 255.0
    return tuple(scaled.mean(axis=(0, 2, 3))), tuple(scaled.std(axis=(0, 2, 3)))


def test_batches_shapes_and_normalisation(split):
    mean, std = _stats(split)
    batches = ImageBatches(split, mean, std, batch_size=4)
    got = list(batches)
    assert len(batches) == len(got) == 3 and [len(y) for _, y in got] == [4, 4, 2]
    x = torch.cat([x for x, _ in got])
    assert x.dtype == torch.float32 and x.shape == (10, 3, 32, 32) and got[0][1].dtype == torch.int64
    np.testing.assert_allclose(x.mean(dim=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(dim=(0, 2, 3), unbiased=False), 1, atol=1e-4)
    np.testing.assert_array_equal(torch.cat([y for _, y in got]), np.arange(10))


@pytest.mark.parametrize("block_pixels", [1 << 24, 3100])  # one block, or blocks of 3 images and a last of 1
def test_dataset_stats_match_numpy(split, block_pixels, monkeypatch):
    monkeypatch.setattr(images, "STATS_BLOCK_PIXELS", block_pixels)
    expected_mean, expected_std = _stats(split)
    mean, std = images._channel_stats(split.images)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-12)
    np.testing.assert_allclose(std, expected_std, rtol=1e-12)


def test_batches_are_reproducible_and_epochs_differ(split):
    def epochs(seed):
        batches = ImageBatches(split, (0.5,) * 3, (0.25,) * 3, batch_size=4, shuffle=True, seed=seed,
                               augment="crop_flip")
        return [[(x, y) for x, y in batches] for _ in range(2)]

    a, b, c = epochs(1), epochs(1), epochs(2)
    for epoch_a, epoch_b in zip(a, b):
        for (xa, ya), (xb, yb) in zip(epoch_a, epoch_b):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(torch.cat([y for _, y in a[0]]), torch.cat([y for _, y in a[1]]))
    assert not torch.equal(torch.cat([y for _, y in a[0]]), torch.cat([y for _, y in c[0]]))


def test_crop_flip_changes_images_but_keeps_shape_and_content(split):
    plain = next(iter(ImageBatches(split, (0.0,) * 3, (1.0,) * 3, batch_size=10)))[0]
    augmented = next(iter(ImageBatches(split, (0.0,) * 3, (1.0,) * 3, batch_size=10, augment="crop_flip", seed=3)))[0]
    assert augmented.shape == plain.shape and not torch.equal(augmented, plain)
    for original, crop in zip(plain, augmented):  # each crop is a shifted, maybe flipped window of the padded image
        padded = torch.nn.functional.pad(original, (4, 4, 4, 4))
        windows = [padded[:, i:i + 32, j:j + 32] for i in range(9) for j in range(9)]
        assert any(torch.equal(crop, w) or torch.equal(crop, w.flip(2)) for w in windows)


def test_subset_uses_a_seeded_part_of_the_split(split):
    small = ImageBatches(split, (0.0,) * 3, (1.0,) * 3, batch_size=2, subset=5, seed=7)
    labels = torch.cat([y for _, y in small])
    assert len(small) == 3 and len(labels) == 5 and len(set(labels.tolist())) == 5
    again = torch.cat([y for _, y in ImageBatches(split, (0.0,) * 3, (1.0,) * 3, batch_size=2, subset=5, seed=7)])
    assert torch.equal(labels, again)
    chosen = {seed: sorted(torch.cat([y for _, y in ImageBatches(split, (0.0,) * 3, (1.0,) * 3, batch_size=2, subset=5,
                                                                 seed=seed)]).tolist()) for seed in range(4)}
    assert len({tuple(c) for c in chosen.values()}) > 1  # the part depends on the seed, not always the first rows
    with pytest.raises(ValueError, match="subset"):
        ImageBatches(split, (0.0,) * 3, (1.0,) * 3, subset=11)


def test_classify_help_names_the_data_sets_that_crop_and_flip():
    """--help said SVHN was cropped and flipped; its registry entry takes no augmentation (a flipped digit is
    another digit). The help's list is kept where --help can read it without the registry."""
    from meta_neighborhoods.commands.classify import CROP_FLIP

    assert CROP_FLIP == tuple(name for name, spec in images.IMAGE_DATASETS.items() if spec.augment == "crop_flip")
    assert images.IMAGE_DATASETS["svhn"].augment == "none"


def test_bad_augment_is_refused(split):
    with pytest.raises(ValueError, match="augment"):
        ImageBatches(split, (0.0,) * 3, (1.0,) * 3, augment="mixup")


class _RunsCode:
    """What a crafted pickle holds: unpickling it calls os.system (here: touch a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("file", ["meta", "train"])
def test_a_crafted_cifar100_pickle_runs_no_code(tmp_path, file):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    data = np.zeros((2, 3072), dtype=np.uint8)
    contents = {"meta": {b"fine_label_names": [b"a", b"b"]},
                "train": {b"data": data, b"fine_labels": [0, 1]}, "test": {b"data": data, b"fine_labels": [1, 0]}}
    marker = tmp_path / "pwned"
    contents[file] = {**contents[file], b"extra": _RunsCode(marker)}
    for name, content in contents.items():
        (root / name).write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(ValueError, match=f"{file} is not an official CIFAR python file, refused: it asks for "
                                         "posix.system"):
        load_image_dataset("cifar100", data_dir=tmp_path)
    assert not marker.exists()


def _cifar10_folder(tmp_path, **files):
    """An official-looking ``cifar-10-batches-py/`` of two images per batch; ``files`` replace some with raw bytes."""
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    batch = pickle.dumps({b"data": np.arange(2 * 3072).astype(np.uint8).reshape(2, 3072), b"labels": [0, 1]})
    contents = {"batches.meta": pickle.dumps({b"label_names": [b"a", b"b"]}), "test_batch": batch,
                **{f"data_batch_{i}": batch for i in range(1, 6)}, **files}
    for name, content in contents.items():
        (root / name).write_bytes(content)
    return root


def _declaring(call: bytes, rows: int = 0) -> bytes:
    """A protocol-2 pickle of a CIFAR batch whose data is ``call`` (opcodes that build an array) and ``rows`` labels:
    a few bytes that ask numpy for an array of any size."""
    labels = b"](" + b"K\x00" * rows + b"e"
    return b"\x80\x02}(C\x04data" + call + b"C\x06labels" + labels + b"u."


SHAPE = b"J" + (20_000).to_bytes(4, "little") + b"M\x00\x0c\x86"  # (20000, 3072): twice a batch's 10,000 images


@pytest.mark.parametrize("call, rows, message", [
    (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + SHAPE + b"C\x01B\x87R", 20_000,
     r"it declares an array of shape \(20000, 3072\); an official file holds at most 30720000 bytes"),
    (b"cnumpy\nndarray\n" + SHAPE + b"\x85R", 20_000, "it calls numpy.ndarray, which a CIFAR file never does"),
    (b"cnumpy\ndtype\nX\x07\x00\x00\x00V100000\x85R", 0, "it asks for an array of 'V100000', a CIFAR file holds"),
])
def test_a_cifar_pickle_cannot_make_numpy_allocate_more_than_an_official_file_holds(tmp_path, call, rows, message):
    _cifar10_folder(tmp_path, data_batch_1=_declaring(call, rows))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=f"data_batch_1 is not an official CIFAR python file, refused: {message}"):
            load_image_dataset("cifar10", data_dir=tmp_path)
        assert tracemalloc.get_traced_memory()[1] < 20_000_000  # numpy's allocations are traced too
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("content, message", [
    (b"\x80\x02P0\n.", "it holds a persistent id, which a CIFAR file never holds"),
    (b"\x80\x02\x82\x01.", "unregistered extension code 1"),
], ids=["persid", "ext"])
def test_a_cifar_pickle_of_opcodes_no_official_file_holds_is_refused_in_one_line(tmp_path, content, message):
    _cifar10_folder(tmp_path, test_batch=content)
    refused = f"test_batch is not an official CIFAR python file, refused: {message}$"
    with pytest.raises(ValueError, match=refused) as error:
        load_image_dataset("cifar10", data_dir=tmp_path)
    assert "\n" not in str(error.value)


def test_a_cifar_pickle_of_many_small_objects_is_refused_before_they_are_built(tmp_path):
    """An opcode a byte (``]``, an empty list) would have the unpickler build ~70 bytes of objects per file byte."""
    _cifar10_folder(tmp_path, test_batch=b"\x80\x02" + b"]" * 1_000_000 + b".")
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="test_batch is not an official CIFAR python file, refused: it holds "
                                             "more than 164096 pickle opcodes, more than an official file$"):
            load_image_dataset("cifar10", data_dir=tmp_path)
        assert tracemalloc.get_traced_memory()[1] < 20_000_000
    finally:
        tracemalloc.stop()


def test_a_full_cifar_batch_written_again_by_python_3_stays_within_the_opcodes_an_official_file_may_hold(tmp_path):
    """Protocol 2 writes each name with ~7 opcodes, where Python 2's files take 2: the bound must allow both."""
    rows = 10_000
    content = {b"batch_label": b"testing batch 1 of 1", b"labels": [i % 2 for i in range(rows)],
               b"data": np.zeros((rows, 3072), np.uint8), b"filenames": [b"image_%05d.png" % i for i in range(rows)]}
    _cifar10_folder(tmp_path, test_batch=pickle.dumps(content, protocol=2))
    assert len(load_image_dataset("cifar10", data_dir=tmp_path).test.labels) == rows


def test_a_cifar10_meta_that_is_a_folder_is_named_not_the_jpeg_copy(tmp_path):
    root = _cifar10_folder(tmp_path)
    (root / "batches.meta").unlink()
    (root / "batches.meta").mkdir()
    with pytest.raises(DataFileError, match=r"cifar10: .*cifar-10-batches-py/batches.meta is not a regular file"):
        load_image_dataset("cifar10", data_dir=tmp_path)


def test_a_cifar_file_larger_than_an_official_one_is_refused_unread(tmp_path):
    root = _cifar10_folder(tmp_path)
    with open(root / "test_batch", "r+b") as handle:
        handle.truncate(2 * 10_000 * 3072 + (1 << 20) + 1)  # sparse: no disk spent
    with pytest.raises(ValueError, match=r"test_batch holds 62488577 bytes, more than an official CIFAR file of "
                                         r"10000 images could \(62488576\); refused unread"):
        load_image_dataset("cifar10", data_dir=tmp_path)


def test_cifar_files_written_by_python_2_are_read(tmp_path):
    """The official files hold byte strings (Python 2's cPickle): numpy's names and the dtype as bytes."""
    def string(data: bytes) -> bytes:
        return b"T" + len(data).to_bytes(4, "little") + data
    pixels = bytes(range(256)) * 24
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + string(b"b") + b"\x87R(K\x01K\x02"
             b"M\x00\x0c\x86cnumpy\ndtype\n" + string(b"u1") + b"K\x00K\x01\x87R(K\x03" + string(b"|")
             + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89" + string(pixels) + b"tb")
    _cifar10_folder(tmp_path, test_batch=b"\x80\x02}(" + string(b"data") + array + string(b"labels")
                    + b"](K\x01K\x00eu.")
    data = load_image_dataset("cifar10", data_dir=tmp_path)
    assert data.test.images.tobytes() == pixels and data.test.labels.tolist() == [1, 0]


def test_an_idx_gzip_bomb_is_not_inflated(tmp_path):
    header = (2049).to_bytes(4, "big") + (3).to_bytes(4, "big")
    bomb = tmp_path / "labels.gz"
    bomb.write_bytes(gzip.compress(header + bytes(50_000_000), compresslevel=1))  # ~50 KB on disk
    with pytest.raises(ValueError, match="longer than its header says"):
        read_idx(bomb)
    huge = tmp_path / "images.gz"
    huge.write_bytes(gzip.compress((2051).to_bytes(4, "big") + ((1 << 31).to_bytes(4, "big")) * 3))
    with pytest.raises(ValueError, match=r"declares 9903520314283042199192993792 bytes, more than this reader"):
        read_idx(huge)


def test_a_decompression_bomb_image_is_refused_in_one_line(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    _write_png_tree(tmp_path / "pacs" / "train", ["a"], 1, rng, size=(64, 64))
    _write_png_tree(tmp_path / "pacs" / "test", ["a"], 1, rng, size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 64 is then over twice the limit: PIL's bomb error
    with pytest.raises(ValueError, match="pacs: image .* is too large to decode safely"):
        load_image_dataset("pacs", data_dir=tmp_path)


def _png_header(path, width, height):
    """A PNG that declares ``width`` x ``height`` pixels but holds four rows: about 1 KB, which no decoder completes."""
    def chunk(kind, data):
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    rows = zlib.compress(bytes(width * 3 + 1) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


@pytest.mark.parametrize("width, height, image_size, message", [
    (9000, 9000, None, r"is 9000 x 9000 pixels, more than 67108864; refused before decoding"),
    (9000, 9000, 8, r"is 9000 x 9000 pixels, more than 67108864; refused before decoding"),
    (12000, 12000, None, r"is too large to decode safely \(Image size \(144000000 pixels\) exceeds limit"),
    (2000, 2000, None, r"images differ in size \(.*bomb.png is \(2000, 2000\), .*0.png is \(8, 8\)\)"),
], ids=["over-our-bound", "over-our-bound-resized", "over-pils-bound", "other-size"])
def test_an_images_size_is_checked_from_its_header_before_it_is_decoded(tmp_path, monkeypatch, width, height,
                                                                        image_size, message):
    decoded, load = [], ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image.size) or load(image))
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        _write_png_tree(tmp_path / "pacs" / split, ["a"], 1, rng)
    _png_header(tmp_path / "pacs" / "train" / "a" / "bomb.png", width, height)
    options = {} if image_size is None else {"image_size": image_size}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's warning is refused, not shown
        with pytest.raises(ValueError, match=f"pacs: (image )?.*{message}"):
            load_image_dataset("pacs", data_dir=tmp_path, **options)
    assert decoded and (width, height) not in decoded


@pytest.mark.parametrize("epoch", ["3", -1, 2**70, 1.0])
def test_a_damaged_batches_state_is_refused(split, epoch):
    batches = ImageBatches(split, (0.5,) * 3, (0.25,) * 3, batch_size=4, shuffle=True, seed=0)
    with pytest.raises(ValueError, match="the batches' epoch should be a count of epochs"):
        batches.load_state_dict({"epoch": epoch})


def test_a_label_equal_to_the_number_of_classes_is_refused():
    from meta_neighborhoods.datasets.images import ImageSpec

    def loader(labels):
        pixels = np.arange(2 * 4, dtype=np.uint8).reshape(2, 1, 2, 2) * 30
        return lambda name, data_dir: ((pixels, np.array(labels, np.int64)), (pixels, np.array([0, 1], np.int64)),
                                       ["a", "b"])

    assert ImageSpec(loader([0, 1])).load("toy", None, None, {}).classes == ["a", "b"]
    with pytest.raises(ValueError, match="labels fall outside 0..1"):
        ImageSpec(loader([0, 2])).load("toy", None, None, {})


def test_classify_resizes_a_folder_set_at_the_size_given_and_keeps_it_on_resume(tmp_path, capsys, user_folder):
    """The loaders of images of any size take image_size, which the command line did not: PACS's 227 px or Tiny
    ImageNet's 64 could be trained only at their own size, and mixed sizes not at all."""
    from meta_neighborhoods.cli import main

    rng = np.random.default_rng(0)
    _write_png_tree(tmp_path / "pacs" / "train", ["a", "b"], 6, rng, size=(20, 20))
    _write_png_tree(tmp_path / "pacs" / "train" / "b", ["c"], 1, rng, size=(24, 18))  # mixed sizes: resize needed
    _write_png_tree(tmp_path / "pacs" / "test", ["a", "b"], 2, rng, size=(20, 20))
    out = tmp_path / "run"
    argv = ["classify", "--dataset", "pacs", "--data-dir", str(tmp_path), "--backbone", "convnet4", "--method",
            "vanilla", "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--quiet", "--image-size", "16"]
    assert main([*argv, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["image_size"] == 16
    inputs = json.loads((out / "run.json").read_text())["input"]
    assert inputs["height"] == 16 and inputs["pixels"] == "resized to 16 x 16 pixels with Pillow's BOX filter (an area average)"
    assert main(["classify", "--resume", str(out), "--data-dir", str(tmp_path), "--quiet"]) == 0  # at 16 again
    capsys.readouterr()
    mnist = ["classify", "--dataset", "mnist", "--backbone", "convnet4", "--method", "vanilla", "--image-size", "16"]
    assert main([*mnist, "--out", str(mine := user_folder("mnist"))]) == 2
    assert "mnist keeps its own image size: --image-size (image_size) resizes cinic10" in capsys.readouterr().err
    assert not any(mine.iterdir())


def test_cifar100_s_train_file_is_bounded_as_a_file_of_50000_images(tmp_path):
    """CIFAR-100's train file holds 50,000 images, five times a CIFAR-10 batch: bounded as a 10,000-image file
   , the official file (about 150 MB) was refused unread. A file past a 10,000-image file's bound but within a
    50,000-image file's is read (pickle stops at its STOP opcode; the rest is sparse zeros)."""
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    for split in ("train", "test"):
        with open(root / split, "wb") as f:
            pickle.dump({b"data": np.arange(2 * 3072).astype(np.uint8).reshape(2, 3072), b"fine_labels": [0, 1]}, f)
    with open(root / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [b"apple", b"bee"]}, f)
    with open(root / "train", "r+b") as handle:
        handle.truncate(2 * 10_000 * 3072 + (1 << 20) + 1)  # sparse: no disk spent
    assert load_image_dataset("cifar100", data_dir=tmp_path).train.images.shape == (2, 3, 32, 32)
    with open(root / "test", "r+b") as handle:  # the test file holds 10,000 images: bounded as such
        handle.truncate(2 * 10_000 * 3072 + (1 << 20) + 1)
    with pytest.raises(ValueError, match=r"test holds 62488577 bytes, more than an official CIFAR file of 10000 "
                                         r"images could \(62488576\); refused unread"):
        load_image_dataset("cifar100", data_dir=tmp_path)


def test_an_image_of_exactly_the_pixel_bound_is_decoded(tmp_path, monkeypatch):
    """MAX_IMAGE_PIXELS is the most an image may have (8192 x 8192 is read): at the bound decoded, one pixel more
    refused before decoding."""
    monkeypatch.setattr(image_formats, "MAX_IMAGE_PIXELS", 64)  # 8 x 8 stands for 8192 x 8192
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        _write_png_tree(tmp_path / "pacs" / split, ["a"], 1, rng, size=(8, 8))
    assert load_image_dataset("pacs", data_dir=tmp_path).train.images.shape == (1, 3, 8, 8)
    monkeypatch.setattr(image_formats, "MAX_IMAGE_PIXELS", 63)
    with pytest.raises(ValueError, match="is 8 x 8 pixels, more than 63; refused before decoding"):
        load_image_dataset("pacs", data_dir=tmp_path)


def test_an_mnist_m_label_line_of_more_than_two_fields_is_refused(tmp_path):
    """mnist_m's lists hold 'name label': a third field (a name with a space, a list of another format) is refused
    naming the line, not read as its first two."""
    rng = np.random.default_rng(0)
    root = tmp_path / "mnist_m"
    for split in ("train", "test"):
        _write_png_tree(root, [f"mnist_m_{split}"], 2, rng)
        (root / f"mnist_m_{split}_labels.txt").write_text("0.png 1\n1.png 0 7\n")
    listing = re.escape(str(root / "mnist_m_train_labels.txt"))
    with pytest.raises(ValueError, match=f"mnist_m: {listing} line 2 should be 'name label', got '1.png 0 7'$"):
        load_image_dataset("mnist_m", data_dir=tmp_path)


@pytest.mark.parametrize("side, refused", [(15, True), (16, True), (17, False)])
def test_paper_augmentation_is_refused_up_to_the_cutout_s_own_size(side, refused):
    """Cutout's 16 x 16 square hides all of a 16 x 16 image when centred on it (--image-size 16 --augment paper):
    refused up to and including 16 px a side."""
    split = ImageSplit(np.zeros((4, 3, side, side), np.uint8), np.arange(4, dtype=np.int64))
    make = lambda: ImageBatches(split, (0.5,) * 3, (0.25,) * 3, batch_size=2, augment="paper")  # noqa: E731
    if refused:
        with pytest.raises(ConfigError, match=f"hides most or all of images of {side}x{side} pixels"):
            make()
    else:
        make()
