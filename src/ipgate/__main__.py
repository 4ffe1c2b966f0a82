"""`python -m ipgate`: the same as the `ipgate` command."""

import sys

from ipgate.cli import main

sys.exit(main())
