"""CLI sub-commands, one module each (see vssl/cli.py)."""
