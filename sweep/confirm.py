"""`python sweep/confirm.py [--study NAME] [--top 3] ...`: retrain a study's best over seeds and give the verdict
(archsearch/workflow/confirm.py)."""
from archsearch.cli import report_errors
from archsearch.workflow.confirm import main

if __name__ == "__main__":
    report_errors(main)
