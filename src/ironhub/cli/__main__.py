"""``python -m ironhub.cli``: the same as the ``ironhub`` console script."""

from __future__ import annotations

from ironhub.cli.main import main

__all__: list[str] = []

if __name__ == "__main__":
    main()
