"""The dataset kinds reslab reads, one registry: the data builder, the memory estimate,
the config's checks and the command line's choices all read it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetKind:
    loader: str  # "memory": decoded whole into a tensor; "imagefolder": a JPEG tree
    image_size: int  # the training crop when --image-size is not given, px
    about: str  # for --help


DATASETS: dict[str, DatasetKind] = {
    "cifar10": DatasetKind("memory", 32, "CIFAR-10 (archive or extracted batches)"),
    "cifar100": DatasetKind("memory", 32, "CIFAR-100"),
    "imagefolder": DatasetKind("imagefolder", 224, "a train/<class>/ tree or archive"),
    "imagenet": DatasetKind("imagefolder", 224, "ImageNet's train/ and val/ trees"),
    "imagenette": DatasetKind("imagefolder", 224, "Imagenette's train/ and val/ trees"),
}


def dataset_kind(name: str) -> DatasetKind:
    try:
        return DATASETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose {', '.join(DATASETS)}") from None


def is_cifar(name: str) -> bool:
    """Held in memory, with CIFAR's own augmentation (crop padding, cutout, flips)."""
    return dataset_kind(name).loader == "memory"
