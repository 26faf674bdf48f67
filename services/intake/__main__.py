"""`python -m services.intake COMMAND ...` (serve, migrate, the event and repair commands)."""

import sys

from services.intake.app import IntakeSettings, create_app
from shared.cli import main

sys.exit(main(IntakeSettings, create_app))
