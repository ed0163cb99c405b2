"""Benchmark: how much of the bootstrap members' spread is the flows' training noise (issue #10).

The band's DF term is the standard deviation s of the bootstrap members, each a flow on a resample of
the stars with its own potential: s^2 = s^2_data + s^2_train (the data's sampling noise and one flow's
training noise). The best estimate averages the K = 4 bootstrap flows, so its variance is
s^2_data (1 + 1/K) + s^2_train / K, and the reported band, s sqrt(1 + 1/K), is exact only when
s^2_train = 0 (docs/method.md, 'Best estimate and its band'). Here: two flows on the same stars with
other seeds (df_seed members, each with its own potential) on each of the coverage benchmark's
realizations (the same mock seeds, so the same stars): half the squared difference of their scalars
estimates s^2_train (one degree of freedom per realization), pooled over the realizations; the coverage
runs' reported standard deviations give s^2 (three degrees of freedom each). Their ratio f predicts
the spread of the coverage runs' errors about their mean over their reported sigma,
sqrt(((1 - f)(1 + 1/K) + f / K) / (1 + 1/K)), and a band scaled by that factor is what the coverage
would be with the share known (printed beside the reported bands' coverage, with the same t quantiles).
Beside it, from the same pairs: how much one flow on a realization's own stars varies over the
realizations (its error variance: the pairs' means vary as v_data + v_train / 2) and how much the coverage
runs' best estimates do, both over the bootstrap members' variance s^2: were the bootstrap resamples a
faithful stand-in for fresh stars, one flow's ratio would be near 1.

    python benchmarks/training_noise.py --family thin_thick_lowered --realizations 10 --coverage lsq

Runs are resumable (benchmarks/out/training_noise/<family>/rNN); writes
benchmarks/results/training_noise_<family>.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math

from runs import HERE, commit, finished_run, machine, run_commit, write_json

SCALARS = ("a_x", "a_y", "a_z", "omega_p", "rho_R0")
REPLICATES = ("df_seed-000", "df_seed-001")
SETTINGS = ["ensemble.bootstrap=0", "ensemble.df_seed=2", "ensemble.df_seed_potentials=true",
            "ensemble.potential_seed=0"]


def _mean(x: list[float]) -> float:
    return sum(x) / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="thin_thick_lowered")
    ap.add_argument("--realizations", type=int, default=10)
    ap.add_argument("--coverage", default="lsq", help="label of the coverage_<label>.json to compare with")
    ap.add_argument("--flows", type=int, default=4, help="K, the flows the coverage runs' best estimate averages")
    args = ap.parse_args()
    cov_path = HERE / "results" / f"coverage_{args.coverage}.json"
    cov = json.loads(cov_path.read_text())
    cov_runs = cov["families"][args.family]["realizations"]
    n = min(args.realizations, len(cov_runs))
    inflate = 1.0 + 1.0 / args.flows
    work = HERE / "out" / "training_noise" / args.family
    rows = []
    for k in range(n):
        run_dir = work / f"r{k:02d}"
        summary, wall = finished_run(run_dir, [f"mock.family={args.family}", f"mock.seed={1000 + k}", *SETTINGS])
        rows.append({"mock_seed": 1000 + k, "replicates": {m: summary["members"][m] for m in REPLICATES},
                     "wall_s": wall, "run_commit": run_commit(run_dir)})
        print(f"{args.family} r{k:02d}: {wall} s", flush=True)
    per_scalar = {}
    for q in SCALARS:
        v_train = _mean([(r["replicates"][REPLICATES[0]][q] - r["replicates"][REPLICATES[1]][q]) ** 2 / 2 for r in rows])
        s2 = [c[q]["uncertainty"] ** 2 / inflate for c in cov_runs[:n]]
        share = v_train / _mean(s2)
        errs = [c[q]["error"] for c in cov_runs[:n]]
        centred = [e - _mean(errs) for e in errs]
        factor = math.sqrt(max((1 - share) * inflate + share / args.flows, 1.0 / args.flows) / inflate)
        # a single flow on a realization's own stars: error a_k + t_kj (a_k: the stars' own sampling noise and
        # bias, variance v_data; t: training noise); the pair's mean varies over the realizations as
        # v_data + v_train / 2, so one flow's error as v_data + v_train
        pair_err = [_mean([r["replicates"][m][q] for m in REPLICATES]) - c[q]["truth"] for r, c in zip(rows, cov_runs)]
        v_pair = sum((e - _mean(pair_err)) ** 2 for e in pair_err) / (n - 1)
        per_scalar[q] = {
            "train_variance": v_train, "train_dof": n, "bootstrap_variance": _mean(s2), "bootstrap_dof": 3 * n,
            "single_flow_error_variance": v_pair + v_train / 2, "data_variance": v_pair - v_train / 2,
            "best_error_variance": sum(e * e for e in centred) / (n - 1),
            "train_share": share,
            # relative standard error of the ratio of two independent variance estimates
            "train_share_rel_se": math.sqrt(2 / n + 2 / (3 * n)),
            "predicted_rms_ratio": factor,
            "observed_rms_ratio": math.sqrt(sum(e * e for e in centred) / (n - 1) / _mean([c[q]["uncertainty"] ** 2
                                                                                         for c in cov_runs[:n]])),
            "covered_68": sum(abs(c[q]["error"]) <= c[q]["half_width_68"] for c in cov_runs[:n]),
            "covered_95": sum(abs(c[q]["error"]) <= c[q]["half_width_95"] for c in cov_runs[:n]),
            "covered_68_scaled": sum(abs(c[q]["error"]) <= factor * c[q]["half_width_68"] for c in cov_runs[:n]),
            "covered_95_scaled": sum(abs(c[q]["error"]) <= factor * c[q]["half_width_95"] for c in cov_runs[:n]),
        }
    out = HERE / "results" / f"training_noise_{args.family}.json"
    write_json(out, {"family": args.family, "realizations": n, "settings": SETTINGS, "coverage": cov_path.name,
                     "coverage_commits": cov["families"][args.family].get("run_commits"), "flows_K": args.flows,
                     "per_scalar": per_scalar, "runs": rows, "commit": commit(), "machine": machine()})
    print("| scalar | training share f of the members' variance | predicted / observed spread of the errors over "
          "the reported sigma | 68% covered: reported / scaled | 95% covered: reported / scaled | over the "
          "bootstrap members' variance: one flow's error on the stars / the best estimate's error |")
    print("|---|---|---|---|---|---|")
    for q, s in per_scalar.items():
        b = s["bootstrap_variance"]
        print(f"| {q} | {s['train_share']:.2f} (+- {s['train_share'] * s['train_share_rel_se']:.2f}) | "
              f"{s['predicted_rms_ratio']:.2f} / {s['observed_rms_ratio']:.2f} | {s['covered_68']}/{n} / "
              f"{s['covered_68_scaled']}/{n} | {s['covered_95']}/{n} / {s['covered_95_scaled']}/{n} | "
              f"{s['single_flow_error_variance'] / b:.2f} / {s['best_error_variance'] / b:.2f} |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
