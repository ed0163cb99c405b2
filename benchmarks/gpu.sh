#!/usr/bin/env bash
# One prepared script for a GPU machine (issue 11): the GPU tests, then `dpot-hpc bench --device cuda`
# and a GPU plan prediction, within ~10 minutes. Run from the repository root in an environment with
# the CUDA build of torch and the package installed (pip install -e '.[test,mpi]').
# Results land in benchmarks/results/bench_cuda.{json,md}; copy them back and commit them.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python -c "import torch; assert torch.cuda.is_available(), 'torch sees no GPU'; print(torch.__version__, torch.version.cuda)"
dpot-hpc selfcheck --device cuda
# the tests that exercise the device: selfcheck on cuda, the device binding, a tiny run on the GPU
timeout 300 python -m pytest -q tests/test_selfcheck.py tests/test_galaxy.py tests/test_cbe.py
out=$(mktemp -d)
timeout 240 dpot-hpc run -q --set run.device=cuda --set run.dir="$out/run" --set mock.n_stars=20000 \
  --set df.max_epochs=3 --set potential.steps=300 --set summary.grid_spacing_kpc=0.05
timeout 300 dpot-hpc bench --device cuda --out benchmarks/results
python - <<'PY'
import json
r = json.load(open("benchmarks/results/bench_cuda.json"))
s = r["stages"]
# seconds per member at the default sizes, for `dpot-hpc plan --costs` (reference sizes of schedule.py)
costs = {"df": 200_000 * 25 / r["df_train_samples_per_s"], "cache": 100_000 / r["cache_points_per_s"],
         "cache_per_flow": 100_000 / r["cache_points_per_s"], "potential": 3000 * s["potential_default"]["seconds_per_step"]}
json.dump(costs, open("benchmarks/results/costs_cuda.json", "w"), indent=1)
print(costs)
PY
dpot-hpc plan --ranks 8 --stars 5600000 --costs benchmarks/results/costs_cuda.json | tail -8
