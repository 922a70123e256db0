"""`python sweep/evaluate.py PATH/model.pt ...`: re-measure checkpoints from themselves alone
(archsearch/report/evaluate.py)."""
import sys

from archsearch.cli import report_errors
from archsearch.report.evaluate import main

if __name__ == "__main__":
    sys.exit(report_errors(lambda: main(sys.argv[1:])))
