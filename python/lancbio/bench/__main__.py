"""``python -m lancbio.bench``: the same as ``python -m lancbio bench``."""

import sys

from . import main

sys.exit(main(sys.argv[1:]))
