set -euo pipefail
export USER="${USER:-$(id -un)}"
# Single quotes are deliberate: these words expand inside the container.
# shellcheck disable=SC2016
srun ch-run --set-env -b /data:/data -c "$PWD" \
    '/shared/images/demo image.sif' -- \
    bash -c 'export "${@:1:1}" && shift 1 && if [ -n "${WITH_CONDA:-}" ]; then $WITH_CONDA; fi && exec "$@"' slurmc 'MY_VAR=a b,c' python train.py --lr 3e-4 'it'\''s $HOME' $'a\x0ab' '#SBATCH -p evil'
