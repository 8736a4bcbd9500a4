"""Datasets held as whole tensors in memory, split into train / validation / test.

The validation split is carved from the training set with a fixed seed (as OFA does) and is
what BN recalibration, subnet evaluation and the accuracy predictor use; the official test
split is kept for final numbers. Batches come from :func:`iterate_batches` (a plain tensor
iterator: on a 2-core CPU it beats DataLoader workers), are augmented on whole batches by
:func:`augment_batch` and resized to the step's resolution by :func:`resize_batch`.

Sources: ``fashion_mnist`` (Debian's ``dataset-fashion-mnist``, gzipped IDX files read with
numpy), ``digits`` (scikit-learn's bundled 8x8 digits, for tests and demos), ``cifar10`` and
``imagefolder`` (torchvision, from a root given by path).
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, DatasetError
from ..typed_config import bounds, check, one_of

log = logging.getLogger("ofabench")

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
AUGMENTATIONS = ("none", "crop_flip", "crop")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, where, and how the validation split is carved.

    ``val_size``: an image count, or a fraction (< 1) of the training set; ``None`` takes the
    dataset's default. ``augment``: ``None`` takes the dataset's default (see :data:`AUGMENTATIONS`).
    ``image_size`` only matters for ImageFolder roots (images are resized to it on load).
    ``max_train_images`` keeps only that many training images (smoke tests, quick demos).
    """

    name: str = "fashion_mnist"
    root: str | None = None
    val_size: int | float | None = field(default=None, metadata=bounds(gt=0))
    val_seed: int = field(default=0, metadata=bounds(ge=0))
    augment: str | None = field(default=None, metadata=one_of(*AUGMENTATIONS))
    image_size: int = field(default=32, metadata=bounds(ge=1))
    max_train_images: int | None = field(default=None, metadata=bounds(ge=1))

    def __post_init__(self) -> None:
        check(self, "data")
        if self.name not in DATASETS:
            raise ConfigError(f"unknown dataset {self.name!r}; available: {sorted(DATASETS)}")


@dataclass(frozen=True)
class Split:
    """Normalised float images ``(N, C, H, W)`` and int64 labels ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: torch.Tensor | slice) -> Split:
        return Split(self.images[index], self.labels[index])


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test splits of one dataset, normalised with the train statistics."""

    name: str
    train: Split
    val: Split
    test: Split
    n_classes: int
    augment: str

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise ConfigError(f"unknown split {name!r}; allowed: train, val, test")
        return getattr(self, name)


# -- loading -----------------------------------------------------------------------------------
def load_dataset(config: DataConfig) -> Dataset:
    """Load ``config``'s dataset into memory and carve the validation split."""
    loader, default_val, default_aug = DATASETS[config.name]
    (train_x, train_y), (test_x, test_y), n_classes = loader(config)
    train_x, test_x = _normalise(train_x, test_x)
    val_size = default_val if config.val_size is None else config.val_size
    train, val = carve_validation(Split(train_x, train_y), val_size, config.val_seed)
    if config.max_train_images is not None:
        train = train.take(slice(0, config.max_train_images))
    log.info(
        "dataset %s: %d train, %d val, %d test images of %s",
        config.name,
        len(train),
        len(val),
        len(test_y),
        tuple(train_x.shape[1:]),
    )
    augment = config.augment or default_aug
    return Dataset(config.name, train, val, Split(test_x, test_y), n_classes, augment)


def carve_validation(train: Split, val_size: float, seed: int) -> tuple[Split, Split]:
    """Split ``train`` into (train, val) with a fixed-seed permutation (OFA's ``valid_size``)."""
    n = len(train)
    n_val = int(round(val_size * n)) if val_size < 1 else int(val_size)
    if not 0 < n_val < n:
        raise ConfigError(f"val_size {val_size} leaves no training or validation images of {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return train.take(order[n_val:].sort().values), train.take(order[:n_val].sort().values)


def _normalise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale both to zero mean / unit std per channel, with the training set's statistics."""
    train = train.float()
    mean = train.mean(dim=(0, 2, 3), keepdim=True)
    std = train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return (train - mean) / std, (test.float() - mean) / std


Raw = tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], int]


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array (the MNIST / Fashion-MNIST format)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetError(f"{path} is truncated: header says {tuple(dims)}")
    return body.reshape(tuple(dims))


def dataset_missing(config: DataConfig) -> str | None:
    """Why ``config``'s dataset cannot load here (a file-based one whose files are missing),
    without reading it; None when it is there (or is built in)."""
    if config.name != "fashion_mnist":
        return None
    root = Path(config.root) if config.root else FASHION_MNIST_DIR
    missing = [name for name in FASHION_MNIST_FILES.values() if not (root / name).is_file()]
    if not missing:
        return None
    hint = (
        "install it with: apt-get install -y dataset-fashion-mnist"
        if config.root is None
        else "point data.root at a folder with the four gzipped IDX files"
    )
    return f"Fashion-MNIST not found in {root} (missing {missing[0]}); {hint}"


def _load_fashion_mnist(config: DataConfig) -> Raw:
    root = Path(config.root) if config.root else FASHION_MNIST_DIR
    missing = dataset_missing(config)
    if missing:
        raise DatasetError(missing)
    arrays = {key: read_idx(root / name) for key, name in FASHION_MNIST_FILES.items()}

    def images(key: str) -> torch.Tensor:
        return torch.from_numpy(arrays[key].copy()).unsqueeze(1)

    def labels(key: str) -> torch.Tensor:
        return torch.from_numpy(arrays[key].astype(np.int64))

    return (
        (images("train_images"), labels("train_labels")),
        (images("test_images"), labels("test_labels")),
        10,
    )


def _load_digits(config: DataConfig) -> Raw:
    """scikit-learn's 1797 8x8 digits; a fixed 20% (seed 0) is the test split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DatasetError(
            "the digits dataset needs scikit-learn; install it with: pip install scikit-learn"
        ) from exc
    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32)).unsqueeze(1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train, test = carve_validation(Split(images, labels), 0.2, seed=0)
    return (train.images, train.labels), (test.images, test.labels), 10


def _load_cifar10(config: DataConfig) -> Raw:
    from torchvision.datasets import CIFAR10

    root = _existing_root(config, "cifar10")
    try:
        train = CIFAR10(str(root), train=True, download=False)
        test = CIFAR10(str(root), train=False, download=False)
    except RuntimeError as exc:
        raise DatasetError(
            f"CIFAR-10 not found under {root}: {exc} (expected {root}/cifar-10-batches-py)"
        ) from exc

    def tensors(ds: CIFAR10) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(np.asarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        return images, torch.tensor(ds.targets, dtype=torch.int64)

    return tensors(train), tensors(test), 10


def _load_imagefolder(config: DataConfig) -> Raw:
    """``root/train`` and ``root/val`` (or ``root/test``), one folder per class, all in memory."""
    root = _existing_root(config, "imagefolder")
    test_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if not (root / "train").is_dir() or test_dir is None:
        raise DatasetError(
            f"ImageFolder root {root} needs a train/ folder and a val/ or test/ folder, "
            "each with one sub-folder per class"
        )
    train, classes = _read_imagefolder(root / "train", config.image_size)
    test, test_classes = _read_imagefolder(test_dir, config.image_size)
    if test_classes != classes:
        raise DatasetError(f"{test_dir} has classes {test_classes}, train/ has {classes}")
    return train, test, len(classes)


def _read_imagefolder(
    folder: Path, size: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], list[str]]:
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    transform = transforms.Compose(
        [transforms.Resize(size), transforms.CenterCrop(size), transforms.PILToTensor()]
    )
    try:
        ds = ImageFolder(str(folder), transform=transform)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DatasetError(f"ImageFolder {folder} is empty or unreadable: {exc}") from exc
    images = torch.stack([_read_image(ds, i) for i in range(len(ds))])
    return (images, torch.tensor(ds.targets, dtype=torch.int64)), list(ds.classes)


def _read_image(ds: Any, index: int) -> torch.Tensor:
    """Image ``index`` of an ImageFolder as a tensor; a file that is not a readable image is a
    DatasetError naming it."""
    try:
        return ds[index][0]
    except (OSError, ValueError, SyntaxError) as exc:  # PIL: UnidentifiedImageError, truncated
        path = ds.samples[index][0]
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetError(f"ImageFolder image {path} cannot be read: {reason}") from exc


def check_dataset_fits(dataset: Dataset, space: Any) -> None:
    """Refuse a dataset whose channels differ from the space's input channels or whose classes
    outnumber the space's outputs (ConfigError naming both)."""
    if dataset.in_channels != space.in_channels or dataset.n_classes > space.n_classes:
        raise ConfigError(
            f"dataset {dataset.name!r} has {dataset.in_channels} channel(s) and "
            f"{dataset.n_classes} classes; space {space.name!r} expects "
            f"{space.in_channels} channel(s) and at most {space.n_classes} classes"
        )


def _existing_root(config: DataConfig, name: str) -> Path:
    if not config.root:
        raise ConfigError(f"dataset {name!r} needs data.root (the folder holding it)")
    root = Path(config.root)
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist")
    return root


# name -> (loader, default val_size, default augmentation)
DATASETS: dict[str, tuple[Callable[[DataConfig], Raw], float, str]] = {
    "fashion_mnist": (_load_fashion_mnist, 10000, "crop_flip"),
    "digits": (_load_digits, 0.15, "none"),
    "cifar10": (_load_cifar10, 5000, "crop_flip"),
    "imagefolder": (_load_imagefolder, 0.1, "crop_flip"),
}


# -- batches -----------------------------------------------------------------------------------
def iterate_batches(
    split: Split,
    batch_size: int,
    generator: torch.Generator | None = None,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = True,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(images, labels)`` batches; shuffled when ``generator`` is given.

    With ``world_size > 1`` every rank draws the same permutation and takes every
    ``world_size``-th image of it, so ranks see disjoint shards of equal length; ``batch_size``
    is then the per-rank batch.
    """
    n = len(split)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    per_rank = n // world_size
    order = order[rank::world_size][:per_rank]
    stop = per_rank - per_rank % batch_size if drop_last else per_rank
    for start in range(0, stop, batch_size):
        index = order[start : start + batch_size]
        yield split.images[index], split.labels[index]


def batches_per_epoch(n_images: int, batch_size: int, world_size: int = 1) -> int:
    """How many batches :func:`iterate_batches` yields per epoch with ``drop_last``."""
    return (n_images // world_size) // batch_size


def augment_batch(images: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Light augmentation on a whole batch: random crop (padding = size / 8) and, for
    ``crop_flip``, a random horizontal flip."""
    if kind == "none":
        return images
    images = random_crop(images, max(1, images.shape[-1] // 8), generator)
    if kind == "crop_flip":
        flip = torch.rand(len(images), generator=generator) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    return images


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` and crop back to the original size at a random offset per image."""
    n, c, h, w = images.shape
    padded = F.pad(images, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    return padded[
        torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols
    ]


def resize_batch(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Bilinear resize to ``resolution`` x ``resolution`` (no-op when already that size)."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    return F.interpolate(
        images, size=(resolution, resolution), mode="bilinear", align_corners=False
    )
