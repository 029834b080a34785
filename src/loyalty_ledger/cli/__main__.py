"""`python -m loyalty_ledger.cli`: the `loyalty` command without its installed script."""

import sys

from loyalty_ledger.cli.main import main

if __name__ == "__main__":  # not when a test imports every module
    sys.exit(main())
