#!/usr/bin/env bash
# Make sure a single-node Slurm cluster answers on this machine, with 4 GPUs declared, for the
# Slurm executor's specs and for development. Installs Debian's Slurm (22.05) and munge when
# missing; starts munged, slurmctld and slurmd directly (no systemd in CI containers).
# Idempotent: a cluster already up with this configuration is left as it is.
#
# Choices that matter on 22.05 in a container (tried by hand):
# - SlurmUser=root, proctrack/linuxproc and task/none: no cgroups needed.
# - A count-only `Name=gpu Count=4` in gres.conf registers 0 GPUs and drains the node; the four
#   are declared as device files (`File=/dev/tty[0-3]`, as Slurm's own test suite does), so jobs
#   get CUDA_VISIBLE_DEVICES. No GPU is really there: the specs' trainers do not need one.
# - No slurmdbd, so no sacct: finished jobs stay visible to squeue for MinJobAge seconds.
# - The node declares 8 CPUs whatever the machine has (SlurmdParameters=config_overrides), so
#   that GPUs, not CPUs, are what jobs wait for.
set -euo pipefail

CONF_DIR=/etc/slurm
HOST=$(hostname -s)
PARTITION=${TRAINYARD_SLURM_PARTITION:-trainyard}

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  echo "infra: installing Slurm and munge from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# munge: a key (the package makes one; make sure), the daemon as the munge user.
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  echo "infra: starting munged"
  su -s /bin/sh munge -c /usr/sbin/munged
  for _ in $(seq 1 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n | unmunge >/dev/null || { echo "infra: munge does not answer" >&2; exit 1; }

mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
conf=$(
  cat <<EOF
# Written by infra/slurm-up.sh: a single-node cluster for Trainyard's Slurm executor.
ClusterName=trainyard
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=600
ReturnToService=2
SlurmdParameters=config_overrides
NodeName=$HOST CPUs=8 RealMemory=1024 Gres=gpu:4 State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
gres="NodeName=$HOST Name=gpu File=/dev/tty[0-3]"
changed=0
if [ "$(cat "$CONF_DIR/slurm.conf" 2>/dev/null)" != "$conf" ]; then
  printf '%s\n' "$conf" >"$CONF_DIR/slurm.conf"
  changed=1
fi
if [ "$(cat "$CONF_DIR/gres.conf" 2>/dev/null)" != "$gres" ]; then
  printf '%s\n' "$gres" >"$CONF_DIR/gres.conf"
  changed=1
fi

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if [ "$changed" = 1 ]; then
  # A new configuration: restart whatever runs with the old one.
  for pidfile in /run/slurm/slurmd.pid /run/slurm/slurmctld.pid; do
    if running "$pidfile"; then
      kill "$(cat "$pidfile")"
      for _ in $(seq 1 50); do running "$pidfile" || break; sleep 0.1; done
    fi
  done
fi
if ! running /run/slurm/slurmctld.pid; then
  echo "infra: starting slurmctld"
  /usr/sbin/slurmctld
fi
for _ in $(seq 1 100); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.1; done
scontrol ping | grep -q 'is UP' || { echo "infra: slurmctld does not answer (see /var/log/slurm/slurmctld.log)" >&2; exit 1; }
if ! running /run/slurm/slurmd.pid; then
  echo "infra: starting slurmd"
  /usr/sbin/slurmd
fi

# Wait for the node to register; a node drained by an earlier bad registration is resumed.
state=""
for _ in $(seq 1 100); do
  state=$(sinfo -h -n "$HOST" -o '%T' 2>/dev/null | head -1)
  case "$state" in
    idle* | mixed* | allocated*) break ;;
    drain* | down*) scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
  esac
  sleep 0.2
done
case "$state" in
  idle* | mixed* | allocated*) ;;
  *)
    echo "infra: node $HOST is '$state', not up (see /var/log/slurm/slurmd.log and 'scontrol show node $HOST')" >&2
    exit 1
    ;;
esac
gpus=$(scontrol show node "$HOST" | grep -o 'Gres=gpu:[0-9]*' | head -1)
[ "$gpus" = "Gres=gpu:4" ] || { echo "infra: node $HOST declares '$gpus', not 4 GPUs" >&2; exit 1; }
echo "infra: Slurm ready: node $HOST ($state, 4 GPUs), partition $PARTITION. Check with: sinfo; scontrol show node $HOST; squeue"
