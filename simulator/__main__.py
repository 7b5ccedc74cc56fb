"""`python -m simulator run SCENARIO.toml ...`: see simulator/cli.py and docs/simulator.md."""

import sys

from simulator.cli import main

sys.exit(main())
