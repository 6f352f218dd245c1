import sys

from metalearning.cli import main

sys.exit(main())
