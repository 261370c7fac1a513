#!/bin/bash
# Run an hpc-hpo driver in a fresh allocation of NODES nodes; its trials become srun steps there.
#   bash launchers/salloc_driver.sh NODES EXPERIMENT.yaml [extra salloc flags...]
# e.g. bash launchers/salloc_driver.sh 4 configs/slurm_steps.yaml --time=02:00:00 --partition=debug
# --exclusive gives the job every CPU of its nodes, so concurrent steps never wait for CPUs.
set -euo pipefail
if [ "$#" -lt 2 ]; then
    echo "usage: $0 NODES EXPERIMENT.yaml [salloc flags...]" >&2
    exit 2
fi
nodes=$1 config=$2
shift 2
case "$nodes" in
    ''|*[!0-9]*) echo "$0: NODES must be a number, got '$nodes'" >&2; exit 2 ;;
esac
exec salloc --nodes="$nodes" --exclusive "$@" "${HPC_HPO:-hpc-hpo}" run "$config"
