#!/usr/bin/env bash
# A one-node Slurm cluster on 127.0.0.1 for the tests (root, no systemd, no cgroups), with
# everything (config, state, logs, munge key and socket) under $SLURM_TEST_DIR.
# Needs Debian's slurm-wlm and munge (apt-get install -y slurm-wlm munge).
set -euo pipefail
D=${SLURM_TEST_DIR:?set SLURM_TEST_DIR}
NCPU=${SLURM_TEST_CPUS:-4}   # may exceed the real cores (config_overrides)
MEM_MB=${SLURM_TEST_MEM_MB:-8192}
rm -rf "$D"; mkdir -p "$D"/{munge,state,spool,log}
chmod 711 "$D/munge"
dd if=/dev/urandom of="$D/munge/munge.key" bs=1 count=1024 status=none
chmod 400 "$D/munge/munge.key"
munged --force --key-file="$D/munge/munge.key" --socket="$D/munge/munge.sock" \
  --pid-file="$D/munge/munged.pid" --seed-file="$D/munge/munged.seed" --log-file="$D/log/munged.log"
cat > "$D/slurm.conf" <<CONF
ClusterName=dpottest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$D/munge/munge.sock,cred_expire=10
CredType=cred/munge
MailProg=/bin/true
SlurmctldPort=${SLURM_TEST_PORT:-6817}
SlurmdPort=$(( ${SLURM_TEST_PORT:-6817} + 1 ))
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.txt
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmi2
ReturnToService=2
SlurmdTimeout=300
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$D/slurm.conf"
slurmctld -i
slurmd -N localhost
for i in $(seq 1 120); do
  [ "$(timeout 5 sinfo -h -N -o '%T' 2>/dev/null | head -1)" = idle ] && exit 0
  if [ "$i" -gt 4 ] && ! kill -0 "$(cat "$D/slurmctld.pid" 2>/dev/null)" 2>/dev/null; then
    echo "slurmctld died:"; tail -n 20 "$D/log/slurmctld.log"; exit 1; fi
  sleep 0.5
done
echo "slurm did not become idle"; tail -n 20 "$D/log/slurmctld.log" "$D/log/slurmd.log"; exit 1
