"""`python -m ausil_lib` is the `ausil` command."""

import sys

from .cli import main

sys.exit(main())
