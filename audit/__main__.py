"""`python -m audit verify BUNDLE --vkey VKEY`: see `audit.cli`."""

import sys

from audit.cli import main

sys.exit(main())
