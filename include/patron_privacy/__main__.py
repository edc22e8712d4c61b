import sys

from patron_privacy.cli import main

sys.exit(main())
