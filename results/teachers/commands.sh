set -x
cd /work/wt-runs
python sweep/run.py +experiment=fcfree_8k data.val_size=10000 data.split_seed=0 seed=1 model.name=fcfree_8k_50k train.threads=1 train.progress=false hydra.run.dir=/work/main/outputs/teachers/fcfree_8k_50k/seed_1
python sweep/run.py +experiment=mnist_20k_v2_t12 data.val_size=10000 data.split_seed=0 train.label_smoothing=0.0 seed=1 model.name=mnist_20k_v2_t12_50k train.threads=1 train.progress=false hydra.run.dir=/work/main/outputs/teachers/mnist_20k_v2_t12_50k/seed_1
