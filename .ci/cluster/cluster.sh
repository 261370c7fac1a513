#!/bin/bash
# Bring a real 4-node Slurm cluster (with accounting) up or down on this one host, idempotently.
#
#   bash .ci/cluster/cluster.sh up       install if needed (root, apt), start everything, wait for 4 idle nodes
#   bash .ci/cluster/cluster.sh down     stop every daemon it started
#   bash .ci/cluster/cluster.sh status   sinfo
#   eval "$(bash .ci/cluster/cluster.sh env)"   point Slurm's commands at this cluster
#
# The configuration lives next to this script and is rendered into $HPC_HPO_SLURM_STATE
# (default /var/lib/hpc_hpo_slurm); the system's /etc/slurm is not touched. Exit codes: 0 up,
# 1 failed to start (the log tail says why), 3 cannot run here (not root, or no apt).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${HPC_HPO_SLURM_STATE:-/var/lib/hpc_hpo_slurm}"
HOST="$(hostname -s)"
export SLURM_CONF="$STATE/slurm.conf"
NODES=(n1 n2 n3 n4)

say() { echo "cluster: $*" >&2; }

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() {  # wait_for SECONDS DESCRIPTION LOG COMMAND...
    local seconds=$1 what=$2 log=$3; shift 3
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            say "$what did not come up in ${seconds}s; end of $log:"
            tail -n 20 "$log" >&2 2>/dev/null || true
            exit 1
        fi
        sleep 0.2
    done
}

install() {
    local missing=0
    for cmd in slurmctld slurmd slurmdbd sacct munged mysqld_safe; do
        command -v "$cmd" >/dev/null 2>&1 || missing=1
    done
    [ $missing -eq 0 ] && return
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        say "Slurm is not installed and this is not root with apt-get: cannot install it here"
        exit 3
    fi
    say "installing slurm-wlm, slurmdbd, munge and mariadb-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq slurm-wlm slurmdbd munge mariadb-server >/dev/null
}

render() {  # render TEMPLATE TARGET
    sed -e "s|@HOST@|$HOST|g" -e "s|@STATE@|$STATE|g" "$HERE/$1" > "$2"
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged
    wait_for 20 munged /var/log/munge/munged.log sh -c 'munge -n | unmunge'
}

start_mariadb() {
    if mysqladmin ping >/dev/null 2>&1; then return; fi
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    (mysqld_safe --skip-networking=0 --bind-address=127.0.0.1 >/dev/null 2>&1 &)
    wait_for 60 mariadb /var/log/mysql/error.log mysqladmin ping
}

start_slurmdbd() {
    if ! running "$STATE/slurmdbd.pid"; then
        render slurmdbd.conf.in "$STATE/slurmdbd.conf"
        chmod 600 "$STATE/slurmdbd.conf"
        slurmdbd
    fi
    wait_for 60 slurmdbd "$STATE/log/slurmdbd.log" sacctmgr -n show cluster
}

# A controller started afresh recovers the jobs its saved state names, though no slurmd runs them any
# more (a machine booted from an image taken mid-test): Slurm holds their nodes for up to half an hour
# before it notices. They are cancelled at once, and nodes left down or drained are resumed.
clear_jobs_of_a_previous_life() {
    local jobs
    jobs=$(squeue -h -o %i | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
        say "cancelling jobs left in the saved state from before this start: $jobs"
        # shellcheck disable=SC2086
        scancel $jobs || true
    fi
    scontrol update nodename="$(IFS=,; echo "${NODES[*]}")" state=resume >/dev/null 2>&1 || true
}

start_slurm() {
    local fresh=0
    if ! running "$STATE/slurmctld.pid"; then
        slurmctld
        fresh=1
    fi
    wait_for 30 slurmctld "$STATE/log/slurmctld.log" scontrol ping
    if ! sacctmgr -n -P show cluster format=cluster | grep -qx hpchpo; then
        sacctmgr -i add cluster hpchpo >/dev/null
    fi
    for node in "${NODES[@]}"; do
        mkdir -p "$STATE/spool/$node"
        running "$STATE/slurmd-$node.pid" || slurmd -N "$node"
    done
    if [ $fresh -eq 1 ]; then
        clear_jobs_of_a_previous_life
        wait_for 90 "4 idle nodes" "$STATE/log/slurmctld.log" \
            sh -c '[ "$(sinfo -h -N -t idle -o %N | sort -u | wc -l)" -ge 4 ]'
    else
        wait_for 60 "4 nodes up" "$STATE/log/slurmctld.log" \
            sh -c '[ "$(sinfo -h -N -t idle,mix,alloc -o %N | sort -u | wc -l)" -ge 4 ]'
    fi
}

up() {
    install
    if [ "$(id -u)" -ne 0 ]; then say "starting the daemons needs root"; exit 3; fi
    mkdir -p "$STATE/log" "$STATE/ctld" "$STATE/spool" "$STATE/dev"
    # Four GPUs per node that Slurm can count and hand out (gres.conf, AutoDetect=off): slurmd wants
    # character devices, and copies of /dev/null's numbers are enough. Slurm sets CUDA_VISIBLE_DEVICES
    # for each step and job it gives them to.
    for gpu in 0 1 2 3; do
        [ -c "$STATE/dev/gpu$gpu" ] || { rm -f "$STATE/dev/gpu$gpu"; mknod "$STATE/dev/gpu$gpu" c 1 3; }
    done
    local before=""
    before=$(cat "$STATE/slurm.conf" "$STATE/gres.conf" 2>/dev/null || true)
    render slurm.conf.in "$STATE/slurm.conf"
    render gres.conf.in "$STATE/gres.conf"
    # slurmdbd and the daemons read slurm.conf's neighbours (cgroup.conf, plugstack.conf) from its directory.
    : > "$STATE/plugstack.conf"
    if [ "$before" != "$(cat "$STATE/slurm.conf" "$STATE/gres.conf")" ] && running "$STATE/slurmctld.pid"; then
        say "the configuration changed: restarting the Slurm daemons"
        for node in "${NODES[@]}"; do stop_pidfile "$STATE/slurmd-$node.pid"; done
        stop_pidfile "$STATE/slurmctld.pid"
    fi
    start_munge
    start_mariadb
    start_slurmdbd
    start_slurm
    say "up: $(sinfo -h -o '%D nodes %t' | tr '\n' ' ')(SLURM_CONF=$SLURM_CONF)"
}

stop_pidfile() {
    local pidfile=$1
    if running "$pidfile"; then
        local pid; pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

down() {
    for node in "${NODES[@]}"; do stop_pidfile "$STATE/slurmd-$node.pid"; done
    stop_pidfile "$STATE/slurmctld.pid"
    stop_pidfile "$STATE/slurmdbd.pid"
    say "down (munge and mariadb are left running: other programs may use them)"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) sinfo ;;
    env) if [ -f "$SLURM_CONF" ]; then echo "export SLURM_CONF=$SLURM_CONF"; fi ;;
    *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
