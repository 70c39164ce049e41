"""`python train.py ...` from a checkout: the same as `facecluster train ...` once installed (`pip install .`).
The command lives in `facecluster/commands/train.py`."""
import sys

from facecluster.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
