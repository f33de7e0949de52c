"""``python -m massive_feeds.cli``."""

import sys

from . import main

sys.exit(main())
