#!/usr/bin/env bash
# small6k_v4 #40 (5,010 params, no teacher) on validation: its 15 epochs, the assignment's 20, and 20 distilled
# from the clean 20k teacher (mnist_20k_v2_t12_50k, weight 0.3, T=4: the better of the two on #29's grid).
# Seeds 201-203 on the search's 50k/10k split, two one-thread lanes; resumable (finished runs are skipped).
# Then: python bench/recipe.py --dir results/recipe_v4/small6k_v4_t40_<e15|e20|e20_t20k>
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
grid() {
  python bench/recipe_grid.py --study small6k_v4 --trial 40 --storage sqlite:///results/search_v4.db \
    --variants today --lanes 1 --threads 1 --out results/recipe_v4 train.progress=false "$@"
}
E20=(train.epochs=20 constraints.max_epochs=20)
T20K=(train.distill.teacher=results/teachers/mnist_20k_v2_t12_50k/seed_1/model.pt train.distill.weight=0.3
      train.distill.temperature=4.0)
{ grid --name small6k_v4_t40_e15 --seeds 201,202,203
  grid --name small6k_v4_t40_e20_t20k --seeds 201,202 "${E20[@]}" "${T20K[@]}"; } &
grid --name small6k_v4_t40_e20 --seeds 201,202,203 "${E20[@]}"
grid --name small6k_v4_t40_e20_t20k --seeds 203 "${E20[@]}" "${T20K[@]}"
wait
