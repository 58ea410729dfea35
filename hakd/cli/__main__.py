"""``python -m hakd.cli ...``: the ``hakd`` command."""

import sys

from hakd.cli.app import main

sys.exit(main())
