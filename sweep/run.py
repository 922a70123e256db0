"""`python sweep/run.py [overrides]` trains one config (the documented Net by default);
`python sweep/run.py -m [sweep=NAME] [overrides]` runs an Optuna sweep (archsearch/search/). The same command as
`python -m archsearch` (archsearch/__main__.py), from the checkout."""
from archsearch.__main__ import main
from archsearch.cli import report_errors
from archsearch.search import register

if __name__ == "__main__":
    report_errors(main, setup=register)  # user errors in one line, signals as exit codes (archsearch/cli.py)
