"""``python -m tuning`` is ``python -m tuning.sweep``."""

import sys

from tuning.sweep import main

if __name__ == "__main__":
    sys.exit(main())
