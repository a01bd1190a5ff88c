"""``python -m leaderboard``: see `leaderboard.cli`."""

import sys

from leaderboard.cli import main

sys.exit(main())
