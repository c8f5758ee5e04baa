"""Typer's rendering of ``slurmc --help``, for the start-up fast path.

Regenerate: SLURMC_UPDATE_GOLDEN=1 pytest tests/test_main.py"""

TOP_HELP = (
    "Usage: slurmc [OPTIONS] COMMAND [ARGS]...\n"
    "\n"
    "  Run containerized jobs on Slurm clusters.\n"
    "\n"
    "Options:\n"
    "  --version  Print the version and exit.\n"
    "  --help     Show this message and exit.\n"
    "\n"
    "Commands:\n"
    "  run      Run COMMAND in IMAGE on the cluster: slurmc run [OPTIONS] IMAGE...\n"
    "  images   List the site's image catalogs (LUMI's SIF directory), newest...\n"
    "  inspect  Show what IMAGE holds (OS, Python, conda envs, pip packages)...\n"
    "  shell    Open a shell in IMAGE on an allocated node (salloc + srun...\n"
    "  build    Build a new SIF image: BASE plus a conda environment, with cotainr.\n"
    "  info     What this machine has for a site: Slurm, the controller, the...\n"
    "  site     Inspect and check site configurations.\n"
    "  cache    Manage the shared image cache.\n"
    "  venv     Python venvs on top of an image, mounted at /user-software in jobs.\n"
    "  jobs     The jobs slurmc submitted: list (default), show, logs, cancel.\n"
)
