"""``python -m massive_feeds``: the ``massive-feeds`` command line."""

import sys

from .cli import main

sys.exit(main())
