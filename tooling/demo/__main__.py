"""`python -m tooling.demo`."""

import sys

from tooling.demo.cli import main

sys.exit(main())
