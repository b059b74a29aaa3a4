import sys

from polyp_core.cli import main

sys.exit(main())
