import sys

from camloc.cli import main

sys.exit(main())
