import sys

from gpucomp.cli import main

sys.exit(main())
