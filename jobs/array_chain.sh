#!/bin/bash
# Job-array mode: one Slurm array per stage, one member per array task, chained with
# --dependency=afterok, then a summary job. `dpot-hpc slurm` writes the scripts into
# <run.dir>/slurm/ and, with --submit, submits the chain and prints the job ids:
#
#   dpot-hpc slurm -c run.yaml --account <ACCOUNT> --partition <PARTITION> \
#       --gpus-per-task 1 --cpus-per-task 8 --time 04:00:00 --max-parallel 16 \
#       --container <PATH/TO/dpot.sif> --bind <PATH/TO/DATA> --submit
#
# Stages:  setup (mock or catalogue -> prepared.h5, plan.json)
#          -> df   (array 0..N_df-1:  dpot-hpc member --stage df --index $SLURM_ARRAY_TASK_ID)
#          -> cache (array 0..N_cache-1)
#          -> potential (array 0..N_pot-1)
#          -> summary (summary.json, summary.h5)
# Each task writes only its own member file and log; a requeued or repeated task resumes from its
# checkpoint or skips a finished member. To resume a chain after a failure, run the same command
# again: only what is missing is recomputed.
#
# The equivalent by hand (what --submit does):
set -euo pipefail
DIR=${1:?usage: jobs/array_chain.sh <run.dir>/slurm}
prev=""
for script in "$DIR"/*.sbatch; do
  if [ -n "$prev" ]; then
    prev=$(sbatch --parsable --dependency=afterok:"$prev" "$script")
  else
    prev=$(sbatch --parsable "$script")
  fi
  echo "$(basename "$script") -> job $prev"
done
