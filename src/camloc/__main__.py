"""`python -m camloc`: the same command line as `camloc`."""

import sys

from camloc.cli import main

sys.exit(main())
