#!/bin/bash
#SBATCH --job-name=slurmc-python
#SBATCH --account=project_465000001
#SBATCH --partition=gpu
#SBATCH --gpus-per-node=2
#SBATCH --time=30:00
#SBATCH --output=%x-%j.out
#
# Rendered by slurmc for site determined (runtime enroot).
# Image: /shared/images/demo image.sif -> /shared/images/demo image.sif
set -euo pipefail
# Single quotes are deliberate: these words expand inside the container.
# shellcheck disable=SC2016
srun --container-image='/shared/images/demo image.sif' \
    --container-mounts="$PWD:$PWD",/data:/data:ro \
    --container-workdir="$PWD" \
    bash -c 'export "${@:1:1}" && shift 1 && exec "$@"' slurmc 'MY_VAR=a b,c' python train.py --lr 3e-4 'it'\''s $HOME' $'a\x0ab' '#SBATCH -p evil'
