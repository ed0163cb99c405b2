"""The flows' gradient errors as errors in variables: which part of each scalar's error is first order in
them (their direction) and which is second order (noise in the regressors of the fit).

On default runs of the built-in mocks (mock seeds 1000, 1001, ...; `benchmarks/out/eiv/<family>/rNN`, made
here when missing), the potential is retrained (the run's settings, potential seed 7) on the points of the
run's best-fit cache with: the exact gradients of ln f; the flows' mean (exact + e, e the flows' error);
the mirrored error (exact - e: a bias first order in e changes sign, a second-order one does not); the
doubled error (exact + 2e); the velocity or the position components of e shuffled between points (noise
with the error's own distribution, uncorrelated with the DF and with the other components); and
independent Gaussian noise with the flows' own spread (at each point and component, the standard
deviation of the K flows' gradients over sqrt(K): the training noise of their mean alone); and the first
flow alone and the mean of the first two (how the error falls with the flows averaged). Beside them, from
each run's summary, the errors of its single bootstrap flows' own potentials and of its best estimate
(``single_flows_vs_best``). Points where
the truth has f = 0 (beyond a lowered or polytropic DF's velocity edge) are left out. Rows are kept in
benchmarks/results/errors_in_variables.json (resumable; each names the commit that computed it and the
one that trained its run); a Markdown table is printed.

    python benchmarks/errors_in_variables.py --families barred_isothermal thin_thick_lowered heavy_disc_polytropic --realizations 3
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from runs import HERE, commit, errors_by_variant, finished_run, machine, pool_rows, run_commit, write_json

from df_accuracy import _caches_with_truth  # noqa: E402
from dpot_hpc.data.mockfile import mock_galaxy, truth_on_grid  # noqa: E402
from dpot_hpc.data.runfolder import RunFolder  # noqa: E402
from gradient_attribution import POTENTIAL_SEED, refit  # noqa: E402

RESULTS = HERE / "results" / "errors_in_variables.json"
VARIANTS = ("exact", "flows", "mirrored", "doubled", "shuffled grad_v error", "shuffled grad_x error",
            "flows' spread as noise", "one flow", "mean of two flows")


def one_realization(task: tuple[str, str, tuple[str, ...]]) -> list[dict]:
    """The errors of the given variants on one finished run folder."""
    torch.set_num_threads(1)
    family, run_dir, variants = task
    _, cfg = RunFolder.open(run_dir)
    truth = truth_on_grid(mock_galaxy(cfg), cfg)
    (mean, singles, exact, w), = [(m, s, ev["grad"].to(m), ev["w"]) for name, m, s, _, ev in _caches_with_truth(run_dir)
                                  if name == "best_fit"]
    ok = exact.abs().sum(-1) > 0
    mean, singles, exact, w = mean[ok], singles[:, ok], exact[ok], w[ok]
    e = mean - exact
    gen = torch.Generator().manual_seed(0)
    shuffled = e[torch.randperm(e.shape[0], generator=gen)]
    spread = singles.std(0) / singles.shape[0] ** 0.5
    grads = {"exact": exact, "flows": mean, "mirrored": exact - e, "doubled": exact + 2 * e,
             "shuffled grad_v error": torch.cat([exact[:, :3], exact[:, 3:] + shuffled[:, 3:]], -1),
             "shuffled grad_x error": torch.cat([exact[:, :3] + shuffled[:, :3], exact[:, 3:]], -1),
             "flows' spread as noise": exact + spread * torch.randn(exact.shape, generator=gen, dtype=exact.dtype),
             "one flow": singles[0], "mean of two flows": singles[:2].mean(0)}
    rows = []
    for variant in variants:
        g = grads[variant]
        rows.append({"family": family, "run": run_dir, "variant": variant, "points": int(ok.sum()),
                     "flows": int(singles.shape[0]), "error": refit(cfg, truth, w, g)[1],
                     "run_commit": run_commit(Path(run_dir)), "commit": commit()})
    return rows


#: Derived rows: the part of the flows' effect that changes sign with their error, (flows - mirrored) / 2,
#: and the part that does not, (flows + mirrored) / 2 - exact (second order and higher, even in the error).
PARTS = ("odd part", "even part")


def parts(rows: list[dict]) -> list[dict]:
    """Per run, the odd and even parts of the flows' effect on each error (``PARTS``)."""
    out = []
    for run in sorted({r["run"] for r in rows}):
        by = {r["variant"]: r for r in rows if r["run"] == run}
        if not {"exact", "flows", "mirrored"} <= set(by):
            continue
        x, f, m = (by[v]["error"] for v in ("exact", "flows", "mirrored"))
        for name, part in zip(PARTS, ({k: (f[k] - m[k]) / 2 for k in f}, {k: (f[k] + m[k]) / 2 - x[k] for k in f})):
            out.append({"family": by["flows"]["family"], "run": run, "variant": name, "error": part})
    return out


def single_flows_vs_best(run_dir: Path) -> dict:
    """From a run's summary.json: Omega_p's and rho(R=R0)'s (relative) errors of its single bootstrap flows'
    own potentials (their mean) and of its best estimate (the median of the potentials on the mean of
    those flows): does averaging flows shrink the error?"""
    s = json.loads((run_dir / "summary.json").read_text())
    truth, mem = s["truth"], s["members"]
    out = {}
    for name, prefix, avg in (("single bootstrap flows", "bootstrap-", statistics.fmean),
                              ("best estimate", "potential_seed-", statistics.median)):
        vals = [v for k, v in mem.items() if k.startswith(prefix)]
        out[name] = {"omega_p": avg(v["omega_p"] for v in vals) - truth["omega_p"],
                     "rho_R0_rel": avg(v["rho_R0"] for v in vals) / truth["rho_R0"] - 1}
    return out


def summarize(rows: list[dict]) -> dict:
    """Per family and variant (and ``PARTS``): realizations, and per error its mean and root mean square."""
    return errors_by_variant(rows + parts(rows), (*VARIANTS, *PARTS))


def table(summary: dict) -> str:
    lines = ["| family | gradients | n | Omega_p error, mean (rms) km/s/kpc | rho(R=R0) error, mean (rms) | "
             "a_x mean (rms) | a_y mean (rms) | a_z mean (rms) (km/s/Myr) |", "|---|---|---|---|---|---|---|---|"]
    for fam, variants in summary.items():
        for v, s in variants.items():
            acc = " | ".join(f"{s[k]['mean']:+.4f} ({s[k]['rms']:.4f})" for k in ("a_x", "a_y", "a_z"))
            lines.append(f"| {fam} | {v} | {s['n']} | {s['omega_p']['mean']:+.3f} ({s['omega_p']['rms']:.3f}) | "
                         f"{s['rho_R0_rel']['mean']:+.1%} ({s['rho_R0_rel']['rms']:.1%}) | {acc} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=["barred_isothermal", "thin_thick_lowered", "heavy_disc_polytropic"])
    ap.add_argument("--realizations", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"rows": []}
    rows = old["rows"]
    done = {(r["run"], r["variant"]) for r in rows}
    tasks = []
    for k in range(args.realizations):
        for fam in args.families:
            run_dir = HERE / "out" / "eiv" / fam / f"r{k:02d}"
            finished_run(run_dir, [f"mock.family={fam}", f"mock.seed={1000 + k}"])
            print(f"{run_dir}: run finished", flush=True)
            todo = tuple(v for v in VARIANTS if (str(run_dir), v) not in done)
            if todo:
                tasks.append((fam, str(run_dir), todo))
    pool_rows(one_realization, tasks, args.jobs, rows, RESULTS)
    summary = summarize(rows)
    members = {run: single_flows_vs_best(Path(run)) for run in sorted({r["run"] for r in rows})}
    write_json(RESULTS, {"summary": summary, "rows": rows, "single_flows_vs_best": members, "potential_seed": POTENTIAL_SEED,
                         "commits": sorted({r["commit"] for r in rows}), "machine": machine()})
    print(table(summary))


if __name__ == "__main__":
    main()
