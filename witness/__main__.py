"""`python -m witness …`: see `witness.cli`."""

import sys

from witness.cli import main

sys.exit(main())
