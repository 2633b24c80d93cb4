"""``python -m dmao ...``: the ``dmao`` command, for machines where it is not on PATH."""

import sys

from dmao.cli.main import main

sys.exit(main())
