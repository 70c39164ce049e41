"""`python export.py ...` from a checkout: the same as `facecluster export ...` once installed (`pip install .`).
The command lives in `facecluster/commands/export.py`."""
import sys

from facecluster.commands.export import main

if __name__ == "__main__":
    sys.exit(main())
