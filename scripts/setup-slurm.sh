#!/usr/bin/env bash
# A real single-node Slurm for the test suite (and for trying `unitcoder slurm` by hand).
#
#   bash scripts/setup-slurm.sh start   # install (Debian, root) if needed, start munge, slurmctld, slurmd
#   bash scripts/setup-slurm.sh env     # print `export SLURM_CONF=...` for the clients
#   bash scripts/setup-slurm.sh stop    # stop the daemons (by PID)
#
# No systemd: the daemons are started directly with a config in $UNITCODER_SLURM_DIR
# (default /tmp/unitcoder-slurm). One node, one partition that oversubscribes its cores so
# a 2-core box runs several one-CPU array tasks; no accounting (`scontrol show job` works
# for an hour after a job ends: MinJobAge). Exits 3 with a message when Slurm cannot be had
# here (not root, no apt-get): the tests then skip visibly.
set -euo pipefail
DIR="${UNITCODER_SLURM_DIR:-/tmp/unitcoder-slurm}"
CONF="$DIR/slurm.conf"
action="${1:-start}"

cannot() {
    echo "setup-slurm: $*" >&2
    exit 3
}

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null && command -v munged >/dev/null; then
        return
    fi
    [ "$(id -u)" = 0 ] || cannot "Slurm is not installed and installing it needs root"
    command -v apt-get >/dev/null || cannot "Slurm is not installed and there is no apt-get"
    echo "setup-slurm: installing slurmctld slurmd slurm-client munge (Debian packages)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null; } \
        || cannot "apt-get could not install Slurm"
}

running() {
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

start_munge() {
    if pgrep -x munged >/dev/null; then
        return
    fi
    [ -f /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || /usr/sbin/create-munge-key -f >/dev/null 2>&1 || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged
}

write_conf() {
    local host mem cpus
    host="$(hostname -s)"
    mkdir -p "$DIR/state" "$DIR/spool"
    # What slurmd sees on this machine; a little memory kept back for the system.
    cpus="$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' | head -1)"
    mem="$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)"
    mem=$(( mem > 2048 ? mem - 1024 : mem ))
    cat >"$CONF" <<EOF
ClusterName=unitcoder
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
KillWait=5
SchedulerParameters=sched_interval=2
DefMemPerCPU=512
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
EOF
}

start() {
    install
    start_munge
    if running "$DIR/slurmctld.pid" && running "$DIR/slurmd.pid"; then
        echo "setup-slurm: already running ($CONF)" >&2
    else
        write_conf
        running "$DIR/slurmctld.pid" || slurmctld -f "$CONF"
        running "$DIR/slurmd.pid" || slurmd -f "$CONF"
    fi
    for _ in $(seq 1 100); do
        state="$(SLURM_CONF="$CONF" sinfo -h -o %t 2>/dev/null | head -1 || true)"
        if [ "$state" = idle ] || [ "$state" = mix ] || [ "$state" = alloc ]; then
            echo "setup-slurm: ready (node $state); export SLURM_CONF=$CONF" >&2
            return
        fi
        sleep 0.2
    done
    tail -5 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
    cannot "the node did not become idle (state: ${state:-none})"
}

stop() {
    for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid"; do
        if running "$pidfile"; then
            kill "$(cat "$pidfile")" || true
        fi
    done
}

case "$action" in
    start) start ;;
    stop) stop ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
