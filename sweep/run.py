"""`python sweep/run.py [overrides]` trains one config (the documented Net by default);
`python sweep/run.py -m [sweep=NAME] [overrides]` runs an Optuna sweep (archsearch/search/)."""
import hydra
from omegaconf import DictConfig

from archsearch.cli import report_errors
from archsearch.search import register


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> object:
    from archsearch.search.job import run_job  # imported here so that config errors answer before torch loads

    return run_job(cfg)


if __name__ == "__main__":
    report_errors(main, setup=register)  # user errors in one line, signals as exit codes (archsearch/cli.py)
