#!/usr/bin/env bash
# The clean teachers against no teacher, on the recipe grid's student (small6k_v3 #29 at its own weight 0.3, T=4):
# seeds 201-203 on the search's 50k/10k split, paired by seed with the grid's "today" variant (no teacher), since
# the teacher loads without touching the student's random state. One thread; resumable (finished runs are skipped).
# Then: python bench/recipe.py --dir results/recipe_v4/small6k_v3_t29_<teacher>
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
for seed in 201 202 203; do
  for t in fcfree_8k_50k mnist_20k_v2_t12_50k; do
    python bench/recipe_grid.py --study small6k_v3 --trial 29 --storage sqlite:///results/search_v3.db \
      --name "small6k_v3_t29_$t" --variants today --seeds "$seed" --lanes 1 --threads 1 --out results/recipe_v4 \
      "train.distill.teacher=$PWD/results/teachers/$t/seed_1/model.pt" train.distill.weight=0.3 \
      train.distill.temperature=4.0 train.progress=false
  done
done
