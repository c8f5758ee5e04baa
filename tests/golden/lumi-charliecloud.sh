#!/bin/bash
#SBATCH --job-name=slurmc-python
#SBATCH --account=project_465000001
#SBATCH --partition=small-g
#SBATCH --gpus-per-node=2
#SBATCH --time=30:00
#SBATCH --output=%x-%j.out
#
# Rendered by slurmc for site lumi (runtime charliecloud).
# Image: /shared/images/demo image.sif -> /shared/images/demo image.sif
# Note: GPU binding skipped: a small-g allocation is shared with other jobs; it applies to whole nodes only (--sbatch-arg=--exclusive, or standard-g)
set -euo pipefail
export USER="${USER:-$(id -un)}"
# Single quotes are deliberate: these words expand inside the container.
# shellcheck disable=SC2016
srun ch-run --set-env -b /var/spool/slurmd -b /opt/cray -b /usr/lib64/libcxi.so.1 -b /usr/lib64/libjansson.so.4 -b /pfs -b /scratch -b /projappl -b /project -b /flash -b /appl -b /data:/data -c "$PWD" \
    '/shared/images/demo image.sif' -- \
    bash -c 'export "${@:1:1}" && shift 1 && $WITH_CONDA && exec "$@"' slurmc 'MY_VAR=a b,c' python train.py --lr 3e-4 'it'\''s $HOME' $'a\x0ab' '#SBATCH -p evil'
