"""``python -m ensemble.cli``: the ``adpolicy`` command without the installed script."""

import sys

from ensemble.cli import main

sys.exit(main())
