"""`python cluster.py ...` from a checkout: the same as `facecluster cluster ...` once installed (`pip install .`).
The command lives in `facecluster/commands/cluster.py`."""
import sys

from facecluster.commands.cluster import main

if __name__ == "__main__":
    sys.exit(main())
