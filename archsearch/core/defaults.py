"""What conf/ says when a command line or a study does not: the sweep's storage and study, the assignment's limits."""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # archsearch/core/defaults.py -> the repository root


def conf_dir() -> Path:
    """conf/ as an installed package ships it (archsearch/conf), or else the checkout's, at its root."""
    shipped = Path(str(files("archsearch") / "conf"))  # a directory on disk: Hydra reads no zipped configs
    return shipped if shipped.is_dir() else ROOT / "conf"


CONF = conf_dir()


def sweep_defaults() -> Any:
    """hydra.sweeper of conf/sweep/default.yaml: the storage and study a plain sweep uses."""
    from omegaconf import OmegaConf

    return OmegaConf.load(CONF / "sweep" / "default.yaml").hydra.sweeper


def assignment() -> tuple[float, int]:
    """(target_acc, max_params) of the assignment, as conf/constraints/assignment.yaml states them."""
    from omegaconf import OmegaConf

    c = OmegaConf.load(CONF / "constraints" / "assignment.yaml")
    return float(c.target_acc), int(c.max_params)
