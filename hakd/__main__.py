"""``python -m hakd`` (and ``torchrun ... -m hakd distill ...``): the command line."""

import sys

from hakd.cli import main

sys.exit(main())
