"""``python -m powerplane.lab.fakenvml SPEC DIR``: build the library, write the config, print the env."""

import sys

from . import main

sys.exit(main())
