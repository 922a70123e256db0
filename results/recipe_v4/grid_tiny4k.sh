#!/usr/bin/env bash
# The recipe grid on the < 4k side: tiny4k_v3 #16 (3,796 params, no teacher), its six variants x seeds 201-203,
# 15 epochs on the 50k/10k split, as two one-thread grids at once (three variants each). Resumable.
# Then: python bench/recipe.py --dir results/recipe_v4/tiny4k_v3_t16_noteacher
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
grid() {
  python bench/recipe_grid.py --study tiny4k_v3 --trial 16 --storage sqlite:///results/search_v3.db \
    --name tiny4k_v3_t16_noteacher --lanes 1 --threads 1 --out results/recipe_v4 train.distill.teacher=null \
    train.distill.weight=0 train.progress=false "$@"
}
grid --variants today,conv_bn_relu,aug_p05 &
grid --variants batch32,sgd0_linear,public
wait
