"""`python sweep/summary.py [overrides]`: account for a model without training (archsearch/report/model_summary.py)."""
import sys

from archsearch.cli import report_errors
from archsearch.report.model_summary import main

if __name__ == "__main__":
    sys.exit(report_errors(lambda: main(sys.argv[1:])))
