"""Entry point. `python sweep/run.py [overrides]` trains one config (the documented Net by
default); `python sweep/run.py -m [sweep=NAME] [overrides]` runs an Optuna sweep."""
from __future__ import annotations

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
    report_errors(main)  # sets HYDRA_FULL_ERROR=1 so that errors reach it, and prints user errors in one line
