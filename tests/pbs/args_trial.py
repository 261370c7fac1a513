#!/usr/bin/env python3
"""A trial that records the exact arguments it received (hostile values must arrive as plain text)."""
import json
import os
import sys

from hpc_hpo import report

with open(os.path.join(os.environ["HPC_HPO_TRIAL_DIR"], "argv.json"), "w") as handle:
    json.dump(sys.argv[1:], handle)
report(epoch=1, loss=0.5)
