"""``python -m facecluster COMMAND ...``: the same as the ``facecluster`` console script."""
import sys

from facecluster.commands import main

if __name__ == "__main__":
    sys.exit(main())
