import sys

from yinzi.cli import main

sys.exit(main())
