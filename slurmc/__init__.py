"""slurmc: run containerized jobs on Slurm clusters."""

__version__ = "0.1.0"
