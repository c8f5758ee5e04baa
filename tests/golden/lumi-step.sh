set -euo pipefail
# Single quotes are deliberate: these words expand inside the container.
# shellcheck disable=SC2016
srun singularity exec --rocm \
    -B /var/spool/slurmd,/opt/cray,/usr/lib64/libcxi.so.1,/usr/lib64/libjansson.so.4,/pfs,/scratch,/projappl,/project,/flash,/appl,/data:/data:ro \
    '/shared/images/demo image.sif' \
    bash -c 'export "${@:1:1}" && shift 1 && $WITH_CONDA && exec "$@"' slurmc 'MY_VAR=a b,c' python train.py --lr 3e-4 'it'\''s $HOME' $'a\x0ab' '#SBATCH -p evil'
