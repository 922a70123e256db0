"""`python sweep/main.py [--confirm "OPTIONS"] [overrides...]`: the main job, `make sweep`: search, then confirm its
best, ending with the verdict (archsearch/workflow/main_job.py)."""
from archsearch.cli import report_errors
from archsearch.workflow.main_job import main

if __name__ == "__main__":
    report_errors(main)
