#!/bin/sh
# A shell trial reporting through the CLI, as programs in other languages do: `hpc-hpo report NAME=VALUE`.
x=""
while [ $# -gt 0 ]; do
  case "$1" in --x) x="$2"; shift 2;; *) shift;; esac
done
for epoch in 1 2 3; do
  hpc-hpo report "epoch=$epoch" "score=$x"
done
