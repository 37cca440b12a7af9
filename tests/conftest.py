"""Fixtures shared by the test modules that train: tiny generated CIFAR, a private cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from reslab.data.synthetic import make_cifar_archive


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a CIFAR-10-format archive: 320 training and 64 test images."""
    root = tmp_path_factory.mktemp("cifar")
    make_cifar_archive(root / "tiny-cifar.tar.gz", n_train=320, n_test=64)
    return root


@pytest.fixture
def cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoded-data cache inside the test's temporary folder, not ~/.cache/reslab."""
    monkeypatch.setenv("RESLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
