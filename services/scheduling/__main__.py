"""`python -m services.scheduling COMMAND ...` (serve, migrate, the event and repair commands)."""

import sys

from services.scheduling.app import SchedulingSettings, create_app
from shared.cli import main

sys.exit(main(SchedulingSettings, create_app))
