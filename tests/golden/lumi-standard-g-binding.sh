#!/bin/bash
#SBATCH --job-name=slurmc-python
#SBATCH --account=p
#SBATCH --partition=standard-g
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --time=1:00:00
#SBATCH --output=%x-%j.out
#
# Rendered by slurmc for site lumi (runtime singularity).
# Image: /shared/images/demo image.sif -> /shared/images/demo image.sif
set -euo pipefail
# Single quotes are deliberate: these words expand inside the container.
# shellcheck disable=SC2016
srun --cpu-bind=mask_cpu:0xfe000000000000,0xfe00000000000000,0xfe0000,0xfe000000,0xfe,0xfe00,0xfe00000000,0xfe0000000000 singularity exec --rocm \
    -B /var/spool/slurmd,/opt/cray,/usr/lib64/libcxi.so.1,/usr/lib64/libjansson.so.4,/pfs,/scratch,/projappl,/project,/flash,/appl \
    '/shared/images/demo image.sif' \
    bash -c 'export ROCR_VISIBLE_DEVICES=$SLURM_LOCALID && $WITH_CONDA && exec "$@"' slurmc python train.py
