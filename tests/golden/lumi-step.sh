set -euo pipefail
# Single quotes are deliberate: these words expand inside the container.
# shellcheck disable=SC2016
srun singularity exec --rocm \
    -B /var/spool/slurmd,/opt/cray,/usr/lib64/libcxi.so.1,/usr/lib64/libjansson.so.4,/pfs,/scratch,/projappl,/project,/flash,/appl,/data:/data:ro \
    --env '"MY_VAR=a b,c"' \
    '/shared/images/demo image.sif' \
    bash -c '$WITH_CONDA && exec "$@"' slurmc python train.py --lr 3e-4 'it'\''s $HOME' $'a\x0ab' '#SBATCH -p evil'
