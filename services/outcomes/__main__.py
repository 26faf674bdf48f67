"""`python -m services.outcomes COMMAND ...` (see --help), and
`python -m services.outcomes chart {patient ID|programme|window} --url BASE --out FILE`."""

import sys

if sys.argv[1:2] == ["chart"]:
    # Drawing needs neither the app nor its settings.
    from services.outcomes.charts.cli import main as chart

    sys.exit(chart(sys.argv[2:]))

from services.outcomes.app import OutcomesSettings, create_app
from shared.cli import main

sys.exit(main(OutcomesSettings, create_app))
