"""`python sweep/results.py ...`: regenerate RESULTS.md from the confirmation runs (archsearch/report/results.py)."""
from archsearch.cli import report_errors
from archsearch.report.results import main

if __name__ == "__main__":
    report_errors(main)
