#!/bin/bash
#SBATCH --job-name=slurmc-python
#SBATCH --account=project_465000001
#SBATCH --partition=small-g
#SBATCH --gpus-per-node=2
#SBATCH --time=30:00
#SBATCH --output=%x-%j.out
#
# Rendered by slurmc for site lumi (runtime podman).
# Image: /shared/images/demo image.sif -> /shared/images/demo image.sif
# Note: GPU binding skipped: a small-g allocation is shared with other jobs; it applies to whole nodes only (--sbatch-arg=--exclusive, or standard-g)
set -euo pipefail
# Single quotes are deliberate: these words expand inside the container.
# shellcheck disable=SC2016
srun podman run --rm --network=host --device /dev/kfd --device /dev/dri --group-add keep-groups \
    -v "$PWD:$PWD" -w "$PWD" \
    -v /var/spool/slurmd:/var/spool/slurmd \
    -v /opt/cray:/opt/cray \
    -v /usr/lib64/libcxi.so.1:/usr/lib64/libcxi.so.1 \
    -v /usr/lib64/libjansson.so.4:/usr/lib64/libjansson.so.4 \
    -v /pfs:/pfs \
    -v /scratch:/scratch \
    -v /projappl:/projappl \
    -v /project:/project \
    -v /flash:/flash \
    -v /appl:/appl \
    -v /data:/data:ro \
    -e MY_VAR='a b,c' \
    'oci-archive:/shared/images/demo image.sif' \
    bash -c '$WITH_CONDA && exec "$@"' slurmc python train.py --lr 3e-4 'it'\''s $HOME' $'a\x0ab' '#SBATCH -p evil'
