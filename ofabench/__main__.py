import sys

from ofabench.cli import main

sys.exit(main())
