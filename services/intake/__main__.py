"""`python -m services.intake [serve|migrate]`."""

import sys

from services.intake.app import IntakeSettings, create_app
from shared.cli import main

sys.exit(main(IntakeSettings, create_app))
