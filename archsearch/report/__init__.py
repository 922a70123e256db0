"""Reading studies and runs back: the review, seed confirmations, RESULTS.md, checkpoint evaluation. Never writes to
a study."""
