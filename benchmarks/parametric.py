"""Benchmark: would a parametric bootstrap calibrate the band (issue #10)?

The bootstrap members' flows (on resamples of the stars) scatter two to four times more, in variance,
than flows on fresh stars of the same galaxy do (training_noise.py), which makes the 68% bands
conservative. A parametric bootstrap draws each replicate's stars afresh from a flow fitted to the
data, so no star is duplicated and every replicate holds as many distinct stars as the data: if its
flows scattered as flows on fresh stars do, it would calibrate the band. Here, on the realizations of
training_noise.py (the same stars as the coverage runs), each replicate draws as many stars as the
sample from that run's flow df_seed-000 (inside the selection sphere, the flow's domain) and fits
one flow and one potential to them with the default settings (a run of its own, the drawn stars as a
Cartesian catalogue). Per scalar: the replicates' pooled variance within a realization over the
bootstrap members' variance s^2 of the coverage runs on the same stars, beside the error variance of
a flow on fresh stars over s^2 (training_noise.py); and the replicates' mean minus the source flow's
own scalar (the parametric bootstrap's estimate of the flows' bias) beside that flow's error against
the truth.

    python benchmarks/parametric.py --family thin_thick_lowered --realizations 4 --replicates 4

Needs training_noise.py's runs of the family (benchmarks/out/training_noise/<family>/rNN). Resumable
(benchmarks/out/parametric/<family>/rNN_pJ); two replicate runs at a time, one process and one thread
each; writes benchmarks/results/parametric_<family>.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import torch

from runs import HERE, commit, finished_run, machine, run_commit, write_json

from dpot_hpc.constants import PHASE_SPACE_COLUMNS
from dpot_hpc.data.prepare import read_prepared
from dpot_hpc.ensemble.members import load_flow

SCALARS = ("a_x", "a_y", "a_z", "omega_p", "rho_R0")
SOURCE = "df_seed-000"


def settings(catalogue, seed: int) -> list[str]:
    """One flow with its own potential on a Cartesian catalogue, one process of one thread."""
    return [f"catalogue.path={catalogue}", "catalogue.format=cartesian", "ensemble.df_seed=1",
            "ensemble.df_seed_potentials=true", "ensemble.bootstrap=0", "ensemble.potential_seed=0",
            "run.processes=1", "run.threads=1", f"run.seed={seed}"]


def drawn_catalogue(source_run, path, seed: int):
    """As many stars as the source run's sample, drawn from its flow SOURCE, as a Cartesian HDF5
    catalogue (heliocentric x, y, z [kpc], vx, vy, vz [km/s] relative to the Sun); written once."""
    if path.exists():
        return path
    n = read_prepared(source_run / "prepared.h5")[0].shape[0]
    flow = load_flow(source_run / "df" / f"{SOURCE}.h5")
    gen = torch.Generator().manual_seed(seed)
    # the flow's domain is the selection sphere: every drawn star lies inside it, so no filter is needed; batches of
    # 50,000 (data.cache.draw_points splits the generator's stream into other batches: other stars than the runs')
    with torch.no_grad():
        w = torch.cat([flow.sample(min(50_000, n - i), gen) for i in range(0, n, 50_000)]).double().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as f:
        for i, c in enumerate(PHASE_SPACE_COLUMNS):
            f[c] = w[:, i]
    tmp.rename(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="thin_thick_lowered")
    ap.add_argument("--realizations", type=int, default=4)
    ap.add_argument("--replicates", type=int, default=4)
    ap.add_argument("--coverage", default="lsq", help="label of the coverage_<label>.json on the same stars")
    args = ap.parse_args()
    cov = json.loads((HERE / "results" / f"coverage_{args.coverage}.json").read_text())["families"][args.family]
    noise = json.loads((HERE / "results" / f"training_noise_{args.family}.json").read_text())["per_scalar"]
    sources = HERE / "out" / "training_noise" / args.family
    work = HERE / "out" / "parametric" / args.family
    tasks = [(k, j) for k in range(args.realizations) for j in range(args.replicates)]

    def replicate(task):
        k, j = task
        src = sources / f"r{k:02d}"
        if not (src / "summary.json").exists():
            raise SystemExit(f"{src}: no finished run; run benchmarks/training_noise.py --family {args.family} first")
        cat = drawn_catalogue(src, work / f"r{k:02d}_p{j}.h5", 7919 * k + 104729 * j + 1)
        run_dir = work / f"r{k:02d}_p{j}"
        summary, wall = finished_run(run_dir, settings(cat, 5000 + 10 * k + j))
        print(f"{run_dir.name}: {wall} s", flush=True)
        return {"realization": k, "replicate": j, "scalars": summary["members"][SOURCE], "wall_s": wall,
                "run_commit": run_commit(run_dir)}

    with ThreadPoolExecutor(2) as pool:
        rows = list(pool.map(replicate, tasks))
    own_scalars = [json.loads((sources / f"r{k:02d}" / "summary.json").read_text())["members"][SOURCE]
                   for k in range(args.realizations)]
    per_scalar = {}
    for q in SCALARS:
        ss, dof, boot, bias, err = 0.0, 0, [], [], []
        for k in range(args.realizations):
            x = np.array([r["scalars"][q] for r in rows if r["realization"] == k])
            ss += float(((x - x.mean()) ** 2).sum())
            dof += x.size - 1
            boot.append(cov["realizations"][k][q]["uncertainty"] ** 2 / 1.25)  # s^2: reported sigma / sqrt(1 + 1/4)
            own = own_scalars[k][q]
            bias.append(float(x.mean() - own))
            err.append(own - cov["realizations"][k][q]["truth"])
        per_scalar[q] = {"replicate_variance": ss / dof, "dof": dof, "bootstrap_variance": float(np.mean(boot)),
                         "replicate_over_bootstrap": ss / dof / float(np.mean(boot)),
                         "fresh_stars_over_bootstrap": noise[q]["single_flow_error_variance"] / noise[q]["bootstrap_variance"],
                         "bias_estimate": bias, "source_error": err,
                         "bias_sign_agrees": int(sum(np.sign(b) == np.sign(e) for b, e in zip(bias, err)))}
    out = HERE / "results" / f"parametric_{args.family}.json"
    write_json(out, {"family": args.family, "realizations": args.realizations, "replicates": args.replicates,
                     "settings": settings("<drawn catalogue>", 0), "per_scalar": per_scalar, "rows": rows,
                     "commit": commit(), "machine": machine()})
    n = args.realizations
    print("| scalar | replicates' variance / bootstrap members' (dof) | a flow on fresh stars: error variance / "
          "bootstrap members' | bias estimate of the replicates: its sign agrees with the source flow's error |")
    print("|---|---|---|---|")
    for q, s in per_scalar.items():
        print(f"| {q} | {s['replicate_over_bootstrap']:.2f} ({s['dof']}) | {s['fresh_stars_over_bootstrap']:.2f} | "
              f"{s['bias_sign_agrees']}/{n} |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
