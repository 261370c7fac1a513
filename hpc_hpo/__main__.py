"""`python -m hpc_hpo ...` is `hpc-hpo ...`: it works where the console script is not on PATH."""
import sys

from .cli import main

sys.exit(main())
