"""Allow ``python -m kcont_vm`` before the console script is installed."""

import sys

from kcont_vm.cli import main

sys.exit(main())
