"""``python3 -m bench`` (from the repository root): runs the benchmark."""

import sys

from . import main

sys.exit(main(sys.argv[1:]))
