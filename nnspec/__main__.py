"""`python -m nnspec` is the `nnspec` command."""

from .cli import main

main()
