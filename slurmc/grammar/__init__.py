"""The grammars of outside things: image references, shell words, sbatch options."""
