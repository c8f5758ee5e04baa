#!/bin/bash
#SBATCH --job-name=slurmc-python
#SBATCH --account=project_465000001
#SBATCH --partition=small-g
#SBATCH --gpus-per-node=2
#SBATCH --time=30:00
#SBATCH --output=%x-%j.out
#
# Rendered by slurmc for site lumi (runtime enroot).
# Image: /shared/images/demo image.sif -> /shared/images/demo image.sif
# Note: GPU binding skipped: a small-g allocation is shared with other jobs; it applies to whole nodes only (--sbatch-arg=--exclusive, or standard-g)
set -euo pipefail
# Single quotes are deliberate: these words expand inside the container.
# shellcheck disable=SC2016
srun --container-image='/shared/images/demo image.sif' \
    --container-mounts="$PWD:$PWD",/var/spool/slurmd,/opt/cray,/usr/lib64/libcxi.so.1,/usr/lib64/libjansson.so.4,/pfs,/scratch,/projappl,/project,/flash,/appl,/data:/data:ro \
    --container-workdir="$PWD" \
    bash -c 'export "${@:1:1}" && shift 1 && $WITH_CONDA && exec "$@"' slurmc 'MY_VAR=a b,c' python train.py --lr 3e-4 'it'\''s $HOME' $'a\x0ab' '#SBATCH -p evil'
