#!/usr/bin/env bash
# A one-node Slurm cluster on this machine (Debian's slurm-wlm + munge), for `make test-slurm`:
# the node is this host (its cores, a bit less than its memory), no accounting, no cgroups, the
# daemons run directly (no systemd) as root with their state, logs and slurm.conf in $STATE.
#
#   .ci/slurm-local.sh start    install (root + apt, when missing), start munged, slurmctld, slurmd,
#                               wait until the node is idle; a second call sees it running
#   .ci/slurm-local.sh stop     stop the daemons this script started
#   .ci/slurm-local.sh status   exit 0 when the cluster answers (sinfo), else 1
# Clients find the cluster with SLURM_CONF=$STATE/slurm.conf (printed by start; the Makefile sets it).
# Exit status: 0 ready, 1 it could not start (a line 'slurm-local: error: why', then the daemon logs' tail).
set -euo pipefail
STATE="${ISLAB_SLURM_DIR:-/var/tmp/islab-slurm}"      # spool, state, logs, pid files, slurm.conf
CONF="$STATE/slurm.conf"
WAIT_S="${ISLAB_SLURM_WAIT_S:-90}"                     # how long start waits for an idle node (seconds)
HOST="$(hostname -s)"
export SLURM_CONF="$CONF"

say() { echo "slurm-local: $*"; }
fail() {
  echo "slurm-local: error: $*" >&2
  for f in "$STATE/slurmctld.log" "$STATE/slurmd.log"; do
    [ -f "$f" ] && { echo "--- last lines of $f" >&2; tail -n 8 "$f" >&2; }
  done
  exit 1
}

node_state() { sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n 1; }
ready() { case "$(node_state)" in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac; }

install() {
  local missing=()
  for c in slurmctld slurmd sinfo sbatch munged; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    || fail "${missing[0]} not found, and only root with apt-get can install it (apt-get install slurm-wlm munge)"
  say "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null; } \
    || fail "apt-get could not install slurm-wlm munge"
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
  [ "$(id -u)" = 0 ] || fail "munged is not running, and only root can start it"
  if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
      || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
  runuser -u munge -- munged || fail "munged did not start (see /var/log/munge/munged.log)"
  touch "$STATE/munged.ours"   # stop ends only the munged this script started
  for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0; sleep 0.5; done
  fail "munged started but does not answer (munge -n | unmunge)"
}

write_conf() {
  local cpus mem_mb
  cpus="$(nproc)"
  # RealMemory a bit under the machine's (slurmd drains a node that has less than it declares)
  mem_mb="$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
  cat >"$CONF" <<EOF
# written by .ci/slurm-local.sh: one node, this host; no accounting, no cgroups
ClusterName=islab-local
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
# a requeued task may start again after this many seconds (the default, 120, is most of the test)
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
# a requeued or cancelled task is killed this many seconds after its SIGTERM
KillWait=10
# finished jobs stay in scontrol this long (seconds): the test reads their states at its end
MinJobAge=3600
NodeName=$HOST CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  if [ -f "$CONF" ] && ready; then
    say "already running: node $HOST $(node_state) (SLURM_CONF=$CONF)"
    return 0
  fi
  install
  mkdir -p "$STATE/ctld" "$STATE/d"
  start_munge
  write_conf
  if ! alive "$STATE/slurmctld.pid"; then
    slurmctld -c || fail "slurmctld did not start"   # -c: a fresh cluster, no jobs from an earlier one
  fi
  if ! alive "$STATE/slurmd.pid"; then
    slurmd -N "$HOST" || fail "slurmd did not start"
  fi
  local t=0
  until ready; do
    [ "$t" -ge "$WAIT_S" ] && fail "node $HOST is '$(node_state)' after ${WAIT_S}s, not idle (SLURM_CONF=$CONF)"
    case "$(node_state)" in   # a node left down / drained by an earlier run comes back
      down*|drain*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1; t=$((t + 1))
  done
  say "running: node $HOST idle, $(nproc) CPUs, partition debug; use it with: export SLURM_CONF=$CONF"
}

stop() {
  [ -f "$CONF" ] || { say "not running (no $CONF)"; return 0; }
  for d in slurmd slurmctld; do
    if alive "$STATE/$d.pid"; then
      kill "$(cat "$STATE/$d.pid")"
      for _ in $(seq 20); do alive "$STATE/$d.pid" || break; sleep 0.5; done
    fi
  done
  if [ -f "$STATE/munged.ours" ]; then
    munged --stop >/dev/null 2>&1 || true
    rm -f "$STATE/munged.ours"
  fi
  say "stopped"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) [ -f "$CONF" ] && ready && { say "running: node $HOST $(node_state)"; exit 0; }; say "not running"; exit 1 ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
