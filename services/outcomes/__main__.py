"""`python -m services.outcomes [serve|migrate]`."""

import sys

from services.outcomes.app import OutcomesSettings, create_app
from shared.cli import main

sys.exit(main(OutcomesSettings, create_app))
