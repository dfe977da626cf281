"""`python3 -m authrun [options]`: the Python worker (see authrun/_bootstrap.py for the options)."""

import sys

from authrun._bootstrap import main

sys.exit(main())
