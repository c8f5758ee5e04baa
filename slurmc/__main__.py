"""Entry point of the ``slurmc`` console script and ``python -m slurmc``."""

from __future__ import annotations


def main() -> None:
    from .cli import app

    app()


if __name__ == "__main__":
    main()
