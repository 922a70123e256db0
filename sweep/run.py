"""Entry point. `python sweep/run.py [overrides]` trains one config (the documented Net by
default); `python sweep/run.py -m [sweep=NAME] [overrides]` runs an Optuna sweep."""
from __future__ import annotations

import os

import hydra
from omegaconf import DictConfig

from sweep.cli import report_errors
from sweep.config import register_configs

register_configs()


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> object:
    from sweep.train import train  # imported here so that config errors answer before torch loads

    return train(cfg).objective


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # let errors reach report_errors, which prints one line
    report_errors(main)
