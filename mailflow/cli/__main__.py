"""``python -m mailflow.cli``, as the single-module cli.py allowed."""

import os
import sys

from mailflow.cli import main

# Guarded: parse worker processes import the main module when they start.
if __name__ == "__main__":
    main(prog_name=os.path.basename(sys.argv[0]))
