"""`python sweep/review.py [--study NAME] ...`: a study's leaderboard, plots and winner (archsearch/report/review.py)."""
from archsearch.cli import report_errors
from archsearch.report.review import main

if __name__ == "__main__":
    report_errors(main)
