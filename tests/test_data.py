"""The dataset layer: IDX reading, splits, batching, sharding, augmentation, error messages."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from ofabench.errors import ConfigError, DatasetError
from ofabench.training import data as data_mod
from ofabench.training.data import (
    DataConfig,
    Split,
    augment_batch,
    batches_per_epoch,
    carve_validation,
    iterate_batches,
    load_dataset,
    read_idx,
    resize_batch,
)

pytest.importorskip("sklearn")


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_round_trip(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), array)


def test_read_idx_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"hello world")
    with pytest.raises(DatasetError, match="IDX"):
        read_idx(tmp_path / "bad")


def test_fashion_mnist_from_a_folder_of_idx_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 10)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    ds = load_dataset(DataConfig("fashion_mnist", root=str(tmp_path), val_size=8))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (32, 8, 10)
    assert ds.train.images.shape[1:] == (1, 28, 28) and ds.augment == "crop_flip"


def test_missing_fashion_mnist_names_the_apt_command(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(data_mod, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="apt-get install -y dataset-fashion-mnist"):
        load_dataset(DataConfig("fashion_mnist"))


@pytest.mark.skipif(
    not (data_mod.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_splits() -> None:
    ds = load_dataset(DataConfig("fashion_mnist"))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (50000, 10000, 10000)
    assert abs(float(ds.train.images.mean())) < 1e-3


def test_digits_splits_are_fixed_and_disjoint() -> None:
    a = load_dataset(DataConfig("digits"))
    b = load_dataset(DataConfig("digits"))
    assert torch.equal(a.val.images, b.val.images)
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert a.augment == "none" and a.n_classes == 10 and a.in_channels == 1


def test_carve_validation_partitions() -> None:
    split = Split(torch.arange(100.0).view(100, 1, 1, 1), torch.arange(100))
    train, val = carve_validation(split, 0.2, seed=3)
    assert len(val) == 20 and len(train) == 80
    assert set(train.labels.tolist()).isdisjoint(val.labels.tolist())
    with pytest.raises(ConfigError):
        carve_validation(split, 100, seed=0)


def test_iterate_batches_shards_ranks_disjointly() -> None:
    split = Split(torch.zeros(50, 1, 2, 2), torch.arange(50))
    seen = []
    for rank in range(2):
        gen = torch.Generator().manual_seed(7)
        labels = [y for _, y in iterate_batches(split, 5, gen, rank, 2)]
        assert len(labels) == batches_per_epoch(50, 5, 2) == 5
        seen.append(torch.cat(labels))
    assert set(seen[0].tolist()).isdisjoint(seen[1].tolist())


def test_augment_and_resize_keep_shapes_and_are_seeded() -> None:
    images = torch.randn(6, 1, 28, 28)
    a = augment_batch(images, "crop_flip", torch.Generator().manual_seed(1))
    b = augment_batch(images, "crop_flip", torch.Generator().manual_seed(1))
    assert a.shape == images.shape and torch.equal(a, b) and not torch.equal(a, images)
    assert augment_batch(images, "none", torch.Generator()) is images
    assert resize_batch(images, 32).shape == (6, 1, 32, 32)


def test_unknown_dataset_and_roots() -> None:
    with pytest.raises(ConfigError, match="fashion_mnist"):
        DataConfig("mnist3d")
    with pytest.raises(ConfigError, match=r"data\.root"):
        load_dataset(DataConfig("cifar10"))
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(DataConfig("imagefolder", root="/nonexistent/folder"))


def test_cifar10_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="CIFAR-10 not found"):
        load_dataset(DataConfig("cifar10", root=str(tmp_path)))


def test_imagefolder_loads_and_empty_one_fails(tmp_path: Path) -> None:
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (40, 30), (i * 40, 10, 200)).save(folder / f"{i}.png")
    ds = load_dataset(DataConfig("imagefolder", root=str(tmp_path), val_size=2, image_size=16))
    assert ds.train.images.shape == (4, 3, 16, 16) and ds.n_classes == 2 and len(ds.test) == 6

    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "val").mkdir()
    with pytest.raises(DatasetError, match="empty"):
        load_dataset(DataConfig("imagefolder", root=str(empty)))
