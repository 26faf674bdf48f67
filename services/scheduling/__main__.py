"""`python -m services.scheduling [serve|migrate]`."""

import sys

from services.scheduling.app import SchedulingSettings, create_app
from shared.cli import main

sys.exit(main(SchedulingSettings, create_app))
