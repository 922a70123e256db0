"""A Hydra-configured architecture search for small MNIST CNNs, in three layers, each importing only those below:

- core: configs and their schemas, data, augmentation, the model builder and its accounting, the constraint
  check, checkpoints and train(cfg, callbacks), which knows nothing of the search;
- search: the Optuna sweeper, the storage, a job's link to its trial, the budget, signals;
- report: reading studies and runs back: the review, confirmation, results, evaluation.

The commands users type are the scripts in sweep/ (python sweep/run.py, review.py, confirm.py, ...).
"""
