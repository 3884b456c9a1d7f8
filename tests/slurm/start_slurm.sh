#!/usr/bin/env bash
# Start a single-node Slurm on this machine, for tests/test_slurm.py (and for trying the Slurm
# profile by hand). Idempotent: a second call with everything running returns at once.
#
#   sudo tests/slurm/start_slurm.sh          # prints "slurm ready: node <host> idle" on success
#
# What it does, as root:
#   1. apt-get installs munge and slurm-wlm (Debian's packages) when slurmctld/slurmd are missing;
#   2. writes /etc/slurm/slurm.conf: one node (CPUs and RealMemory from `slurmd -C`), one default
#      partition, SlurmctldHost = `hostname -s`, proctrack/linuxproc + task/none (no cgroups, which
#      containers rarely allow), no accounting database (so no sacct: use squeue for job status),
#      a long MinJobAge so that squeue still knows finished jobs, and a job-completion log
#      (/var/log/slurm/jobcomp.log) that records every job that ran, for the tests to check;
#   3. starts munged, slurmctld and slurmd, and waits until sinfo shows the node idle.
#
# Exit status: 0 when Slurm is up; 2 when it cannot be started here (not root, no apt, a
# daemon that will not start): the message on stderr says why, and the tests skip with it.
# When a Slurm controller already answers and its node is up (with a MinJobAge long enough for
# squeue-based status checks), the script uses it as it is and changes nothing.
#
# Environment (all optional):
#   SLURM_START_TIMEOUT  seconds to wait for the node to become idle (default 60)
#   SLURM_CONF           where to write slurm.conf (default /etc/slurm/slurm.conf; Slurm's own
#                        commands read the same variable)
#   SLURM_STATE_ROOT     where state, logs and pid files go (default /var/lib/slurm, /var/log/slurm)
#   SLURMCTLD_PORT, SLURMD_PORT   ports (default 6817, 6818): a second, private instance beside
#                        another one needs both of these, a SLURM_CONF and a SLURM_STATE_ROOT
set -euo pipefail

MARKER="# written by paper-repro tests/slurm/start_slurm.sh"
CONF="${SLURM_CONF:-/etc/slurm/slurm.conf}"
if [ -n "${SLURM_STATE_ROOT:-}" ]; then
    LOGDIR="$SLURM_STATE_ROOT/log"; STATEDIR="$SLURM_STATE_ROOT/state"; RUNDIR="$SLURM_STATE_ROOT/run"
else
    LOGDIR=/var/log/slurm; STATEDIR=/var/lib/slurm; RUNDIR=/run
fi
CTLD_PORT="${SLURMCTLD_PORT:-6817}"
SLURMD_PORT_="${SLURMD_PORT:-6818}"
TIMEOUT="${SLURM_START_TIMEOUT:-60}"
MIN_JOB_AGE_NEEDED=600

die() { echo "start_slurm: $*" >&2; exit 2; }
log() { echo "start_slurm: $*" >&2; }

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts daemons)"

# -- 1. packages ---------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
   || ! command -v sbatch >/dev/null; then
    command -v apt-get >/dev/null || die "slurm is not installed and there is no apt-get to install it"
    export DEBIAN_FRONTEND=noninteractive
    pkgs=(munge slurm-wlm)
    log "installing ${pkgs[*]}"
    if ! apt-get install -y --no-install-recommends "${pkgs[@]}" >/tmp/start_slurm.apt.log 2>&1; then
        log "apt-get install failed; running apt-get update first"
        apt-get update >>/tmp/start_slurm.apt.log 2>&1 || die "apt-get update failed (see /tmp/start_slurm.apt.log)"
        apt-get install -y --no-install-recommends "${pkgs[@]}" >>/tmp/start_slurm.apt.log 2>&1 \
            || die "apt-get install ${pkgs[*]} failed (see /tmp/start_slurm.apt.log)"
    fi
fi

HOST="$(hostname -s)"

# -- an existing, healthy Slurm is used as it is ---------------------------------------------------
healthy() {
    local state age
    # Without a slurm.conf the client tools try a "configless" DNS lookup for a minute: skip it.
    [ -f "$CONF" ] || return 1
    pgrep -x slurmd >/dev/null 2>&1 || return 1
    timeout 10 scontrol ping 2>/dev/null | grep -q UP || return 1
    state="$(timeout 10 sinfo -h -n "$HOST" -o %t 2>/dev/null | head -1)"
    case "$state" in idle|mix|alloc) ;; *) return 1 ;; esac
    age="$(timeout 10 scontrol show config 2>/dev/null | sed -n 's/^MinJobAge *= *\([0-9]*\).*/\1/p')"
    [ -n "$age" ] && [ "$age" -ge "$MIN_JOB_AGE_NEEDED" ] || return 1
    echo "slurm ready: node $HOST $state (already running, MinJobAge=${age}s)"
}
healthy && exit 0

# -- 2. configuration ----------------------------------------------------------------------------
# `slurmd -C` prints this machine's node line: NodeName=... CPUs=... RealMemory=...
NODELINE="$(slurmd -C 2>/dev/null | grep '^NodeName=' || true)"
[ -n "$NODELINE" ] || die "slurmd -C did not print the node's hardware"
CPUS="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$NODELINE")"
MEM="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$NODELINE")"
# Keep some memory back for the OS and the daemons, so the node is never drained for "low memory".
MEM=$(( MEM * 9 / 10 ))

mkdir -p "$(dirname "$CONF")" "$LOGDIR" "$STATEDIR/slurmctld" "$STATEDIR/slurmd" "$RUNDIR"
NEWCONF="$(cat <<EOF
$MARKER
# A single-node test cluster. Not for production use.
ClusterName=paperrepro
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT_
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGDIR/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for 2 h (the Snakemake executor polls squeue).
MinJobAge=7200
MaxJobCount=100000
InactiveLimit=0
KillWait=10
SlurmctldTimeout=30
SlurmdTimeout=60
StateSaveLocation=$STATEDIR/slurmctld
SlurmdSpoolDir=$STATEDIR/slurmd
SlurmctldPidFile=$RUNDIR/slurmctld.pid
SlurmdPidFile=$RUNDIR/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)"

# Only a configuration written by a start_slurm.sh of this project is ever replaced.
if [ -f "$CONF" ] && ! grep -q "tests/slurm/start_slurm.sh" "$CONF"; then
    die "$CONF exists and was not written by this script; not touching a real cluster's configuration"
fi
changed=0
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$NEWCONF" ]; then
    printf '%s\n' "$NEWCONF" >"$CONF"
    changed=1
fi
# Some versions read cgroup.conf even with proctrack/linuxproc; a minimal one is harmless.
CGCONF="$(dirname "$CONF")/cgroup.conf"
[ -f "$CGCONF" ] || echo "CgroupPlugin=autodetect" >"$CGCONF" 2>/dev/null || true

# -- 3. daemons ----------------------------------------------------------------------------------
pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop() {  # stop the daemon of *this* configuration, by its pid file, and wait for it to go
    local pidfile="$1" pid
    pid_alive "$pidfile" || return 0
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}

# munge: the key is created by the package; the daemon runs as the munge user.
if [ ! -s /etc/munge/munge.key ]; then
    (command -v mungekey >/dev/null && mungekey --create --force) \
        || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
fi
chown munge:munge /etc/munge/munge.key 2>/dev/null || true
chmod 0400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge
if ! pgrep -x munged >/dev/null 2>&1; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged || /usr/sbin/munged --force || die "munged did not start"
fi
for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null 2>&1 || die "munge does not work (munge -n | unmunge failed)"

export SLURM_CONF="$CONF"
if [ "$changed" = 1 ]; then
    stop "$RUNDIR/slurmd.pid"
    stop "$RUNDIR/slurmctld.pid"
fi
if ! pid_alive "$RUNDIR/slurmctld.pid"; then
    log "starting slurmctld"
    slurmctld -f "$CONF" || die "slurmctld did not start (see $LOGDIR/slurmctld.log)"
fi
for _ in $(seq 100); do timeout 5 scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
timeout 5 scontrol ping 2>/dev/null | grep -q UP || die "slurmctld does not answer (see $LOGDIR/slurmctld.log)"
if ! pid_alive "$RUNDIR/slurmd.pid"; then
    log "starting slurmd"
    slurmd -f "$CONF" || die "slurmd did not start (see $LOGDIR/slurmd.log)"
fi

state=""
for _ in $(seq $(( TIMEOUT * 2 ))); do
    state="$(timeout 5 sinfo -h -n "$HOST" -o %t 2>/dev/null | head -1)"
    case "$state" in
        idle|mix|alloc) break ;;
        down*|drain*|drng*|fail*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
done
case "$state" in
    idle|mix|alloc) echo "slurm ready: node $HOST $state ($CPUS CPUs, ${MEM} MB)" ;;
    *) die "node $HOST is '$state' after ${TIMEOUT}s (see $LOGDIR/slurmd.log and $LOGDIR/slurmctld.log)" ;;
esac
