#!/usr/bin/env bash
# Stop what start.sh started, by PID file only.
D=${SLURM_TEST_DIR:?set SLURM_TEST_DIR}
export SLURM_CONF="$D/slurm.conf"
scancel --user="$(id -un)" 2>/dev/null || true
for pf in "$D/slurmd.pid" "$D/slurmctld.pid" "$D/munge/munged.pid"; do
  [ -f "$pf" ] || continue
  pid=$(cat "$pf"); kill "$pid" 2>/dev/null || continue
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
done
