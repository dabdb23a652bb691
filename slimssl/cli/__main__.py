import sys

from slimssl.cli import main

sys.exit(main())
