"""`dpot-hpc bench --quick` writes the documented JSON and table; the analytic FLOP count of a
potential step is the hand count, and the achieved rate cannot exceed the measured matmul ceiling by
more than a margin (elementwise work is not counted)."""

import json
import subprocess
import sys

from dpot_hpc.bench import potential_step_flops


def test_flop_count_of_a_potential_step():
    # 3 -> 2 -> 1 network, N = 10 points, Laplacian at 5 (one-pass): rows 4*10 + 5 = 45; sum(in*out) = 3*2 + 2*1 = 8
    assert potential_step_flops([2], 10, 5) == 6 * 45 * 8
    # Laplacian at 2 of 10 (< N/2): reverse pass over 2 rows per point, one-pass at the 2: 2*10 + 5*2 = 30 rows
    assert potential_step_flops([2], 10, 2) == 6 * 30 * 8


def test_bench_quick_writes_the_documented_keys(tmp_path):
    p = subprocess.run([sys.executable, "-m", "dpot_hpc", "bench", "--quick", "--device", "cpu", "--threads", "1",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "bench_cpu.json").read_text())
    for key in ("df_train_samples_per_s", "cache_points_per_s", "potential_4x512_every_point_points_per_s",
                "potential_flop_fraction", "machine", "stages"):
        assert key in res, key
    assert res["machine"]["threads"] == 1 and res["machine"]["device"] == "cpu"
    assert all(res[k] > 0 for k in ("df_train_samples_per_s", "cache_points_per_s", "potential_4x512_every_point_points_per_s"))
    assert 0 < res["potential_flop_fraction"] < 1.5
    assert all(s["peak_memory_mb"] > 10 for s in res["stages"].values())
    assert "| gradient cache" in (tmp_path / "bench_cpu.md").read_text()
    # the commit measured: this checkout's (the tests run from one)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert res["commit"].split("+")[0] == head
