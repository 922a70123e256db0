"""`python -m archsearch [overrides]`: what `python sweep/run.py` does, for an installed package and from any
directory (its configs are the package's, archsearch.conf)."""
import hydra
from omegaconf import DictConfig

from archsearch.cli import report_errors
from archsearch.core.defaults import CONF
from archsearch.search import register


@hydra.main(config_path=str(CONF), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> object:
    """One run, or with -m the sweep: the job of sweep/run.py."""
    from archsearch.search.job import run_job  # imported here so that config errors answer before torch loads

    return run_job(cfg)


if __name__ == "__main__":
    report_errors(main, setup=register)  # user errors in one line, signals as exit codes (archsearch/cli.py)
