#!/usr/bin/env python3
"""A trial program that knows nothing of hpc_hpo: it prints 'FoM: <value>' lines, as CrayAI's evaluator reads."""
import sys
import time

x = float(sys.argv[sys.argv.index("--x") + 1])
for epoch in range(1, 6):
    print(f"epoch {epoch} done")
    print(f"FoM: {abs(x - 0.5) + 1.0 / epoch:.4f}")
    time.sleep(0.01)
