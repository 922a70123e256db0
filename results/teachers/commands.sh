#!/usr/bin/env bash
# The clean distillation teachers: trained on the search's training split only (50k images; the 10k that the
# searches validate on are held out: data.val_size=10000, data.split_seed=0), without label smoothing.
# Run from the repository root; one thread each, one after the other (2026-12-03, the 2-core EPYC, shared).
set -euo pipefail
python sweep/run.py +experiment=fcfree_8k data.val_size=10000 data.split_seed=0 seed=1 model.name=fcfree_8k_50k train.threads=1 train.progress=false hydra.run.dir=results/teachers/fcfree_8k_50k/seed_1
python sweep/run.py +experiment=mnist_20k_v2_t12 data.val_size=10000 data.split_seed=0 train.label_smoothing=0.0 seed=1 model.name=mnist_20k_v2_t12_50k train.threads=1 train.progress=false hydra.run.dir=results/teachers/mnist_20k_v2_t12_50k/seed_1
