"""Benchmark: accuracy of the DF flows' gradients of ln f, their cost, and the end-to-end scalars, on both
built-in mock families.

The potential sees only grad ln f, so a DF model is judged by how well its gradients match the mock's
exact ones (``physics.mock.log_df_gradients``) and by what it costs. Everything runs the project's own
code (``models.df_training.train_flow``, ``data.cache.build_cache``, ``models.potential_training``)
with the candidate's settings on top of the defaults.

Training set: ``sample(mock, N, seed=1)`` of the family (N = 200,000 unless the candidate says
otherwise). Evaluation set: 20,000 true stars with |x| < 0.9 kpc from a separate draw (seed 12345).

Metrics per flow (``gradient_metrics``):
  gx_err, gv_err   median over the evaluation stars of |g_fit - g_true| / |g_true| for grad_x ln f and
                   grad_v ln f (stars where f = 0 for the truth, beyond a velocity edge, are left out)
  slope_z          least-squares slope through the origin of fitted vs true d ln f/dz at |z| < 0.2 kpc
                   (1 = the disc's vertical core neither smoothed nor sharpened)
  slope_vz         the same for d ln f/dv_z
Costs: training wall seconds, peak RSS of the process (MB).
End to end (``e2e``): the cache of the pipeline on the flows of several seeds (100,000 points drawn
from them, the mean of their gradients; the metrics above also at these cache points, where the
potential sees the gradients), one potential at the default settings on it (potential seed 7), and its
scalars against the truth: rho(R=R0) ratio, Omega_p, a_x relative, a_y and a_z differences.

By depth below a velocity edge (``edges``, a family with a lowered-isothermal component): the same
median errors, and the spread of the flows, in bins of psi = (E_t - E_J)/sigma^2 of the component with the
lowest truncation energy (``EDGE_BINS``; psi = 0 at its velocity edge, where the exact grad ln f jumps).

One training per process (its peak memory is its own), one torch thread; results accumulate in
benchmarks/results/df_accuracy.json and ``table`` writes benchmarks/results/df_accuracy.md:

    python benchmarks/df_accuracy.py train smooth2 --family barred_isothermal --seed 0
    python benchmarks/df_accuracy.py e2e smooth2 --family barred_isothermal --seeds 0 1 2
    python benchmarks/df_accuracy.py all      # every candidate, family and seed (hours on 2 cores)
    python benchmarks/df_accuracy.py table
    python benchmarks/df_accuracy.py run RUN_DIR   # a finished mock run's caches against the exact DF
    python benchmarks/df_accuracy.py edges smooth2:0 smooth2_wd1:0   # errors by depth below the velocity edge
"""

from __future__ import annotations

import argparse
import fcntl
import io
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from dpot_hpc.config import load_config  # noqa: E402
from dpot_hpc.data.h5io import atomic_write_bytes, atomic_write_text  # noqa: E402
from dpot_hpc.data.cache import build_cache, evaluate_flows  # noqa: E402
from dpot_hpc.data.mockfile import mock_galaxy, truth_on_grid  # noqa: E402
from dpot_hpc.ensemble.members import member_scalars  # noqa: E402
from dpot_hpc.models.df_training import build_flow, train_flow  # noqa: E402
from dpot_hpc.models.potential_training import train_potential  # noqa: E402
from dpot_hpc.physics.mock import MOCK_FAMILIES, log_df_gradients, sample  # noqa: E402
from runs import commit, machine  # noqa: E402

OUT = HERE / "out" / "df_accuracy"
RESULTS = HERE / "results" / "df_accuracy.json"
TABLE = HERE / "results" / "df_accuracy.md"
EVAL_BATCH = 10_000  # points per flow evaluation
FAMILIES = ("barred_isothermal", "thin_thick_lowered")
N_EVAL, EVAL_SEED, EVAL_R_MAX, NEAR_PLANE_Z = 20_000, 12345, 0.9, 0.2

#: name -> (config overrides of the df section, stars, note)
CANDIDATES: dict[str, tuple[list[str], int, str]] = {
    "maf_e50": (["df.components=0", "df.max_epochs=50", "df.patience=50"], 200_000,
                "affine MAF, 50 epochs: the default before the monotone steps"),
    "smooth2": ([], 200_000, "the default: 6 transforms, 2 tanh steps, 30 epochs"),
    "smooth2_e20": (["df.max_epochs=20", "df.patience=20"], 200_000, "the default with 20 epochs"),
    "smooth2_e50": (["df.max_epochs=50", "df.patience=50"], 200_000, "the default with 50 epochs"),
    "smooth4_t4": (["df.components=4", "df.transforms=4"], 200_000, "4 transforms, 4 tanh steps, 30 epochs"),
    "smooth2_rot": (["df.rotate_velocities=true"], 200_000,
                    "the default on velocities turned to the Sun's azimuth"),
    "smooth2_bf16": (["df.bfloat16_fraction=1.0"], 200_000,
                     "the default with bfloat16 matrix products in every epoch's training loss"),
    "smooth2_bf16_f32end": (["df.bfloat16_fraction=0.9"], 200_000,
                            "the default with bfloat16 matrix products in the first 27 of 30 epochs"),
    "smooth2_wd01": (["df.weight_decay=0.01"], 200_000, "the default with AdamW weight decay 0.01"),
    "smooth2_wd1": (["df.weight_decay=0.1"], 200_000, "the default with AdamW weight decay 0.1"),
    "smooth2_wd10": (["df.weight_decay=1.0"], 200_000, "the default with AdamW weight decay 1.0"),
    "pop2_h90": (["df.populations=2", "df.hidden=[90, 90]"], 200_000,
                 "a mixture of 2 flows of 90-90 (df.populations=2), about the default's FLOPs per step"),
    "accurate_1e6": (["df.max_epochs=20"], 1_000_000,
                     "the accurate profile's flow (configs/accurate.yaml): 20 epochs over 10^6 stars"),
    "accurate_1e6_pop2": (["df.max_epochs=20", "df.populations=2", "df.hidden=[90, 90]"], 1_000_000,
                          "a mixture of 2 flows of 90-90 trained as the accurate profile's flow: 20 epochs over "
                          "10^6 stars"),
}
SEEDS = (0, 1, 2)


def config(family: str, overrides: list[str]):
    return load_config(None, [f"mock.family={family}", *overrides])


def training_stars(family: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(stars (n, 6), the draw's log_c), cached per family and size."""
    path = OUT / f"train_{family}_{n}.pt"
    if not path.exists():
        s = sample(mock_galaxy(config(family, [])), n, seed=1)
        _save(path, {"w": torch.cat([s.x_h, s.v_h], -1), "log_c": s.log_c})
    d = torch.load(path)
    return d["w"], d["log_c"]


def eval_set(family: str) -> dict[str, torch.Tensor]:
    """N_EVAL held-out true stars inside EVAL_R_MAX and their exact gradients of ln f."""
    path = OUT / f"eval_{family}.pt"
    if not path.exists():
        mock = mock_galaxy(config(family, []))
        s = sample(mock, 32_000, seed=EVAL_SEED)
        keep = torch.linalg.vector_norm(s.x_h, dim=-1) < EVAL_R_MAX
        x, v = s.x_h[keep][:N_EVAL], s.v_h[keep][:N_EVAL]
        _save(path, exact_at(mock, s.log_c, x, v))
    return torch.load(path)


def _save(path: Path, obj) -> None:
    """torch.save through a temporary file and a rename (two trainings started together may both
    write a star set; a killed one leaves no half-written flow)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _rel(fit: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(fit - true, dim=-1) / torch.linalg.vector_norm(true, dim=-1)


def _slope(fit: torch.Tensor, true: torch.Tensor) -> float:
    """Least-squares slope through the origin of fitted against true values."""
    return float((fit * true).sum() / (true * true).sum())


def gradient_metrics(g: torch.Tensor, ev: dict) -> dict[str, float]:
    """The module docstring's metrics of fitted gradients g (N, 6) at the evaluation stars."""
    w, t = ev["w"], ev["grad"]
    ok = t.abs().sum(-1) > 0  # f > 0 for the truth
    g, t, w = g[ok], t[ok], w[ok]
    near = w[:, 2].abs() < NEAR_PLANE_Z
    return {"gx_err": float(_rel(g[:, :3], t[:, :3]).median()), "gv_err": float(_rel(g[:, 3:], t[:, 3:]).median()),
            "slope_z": _slope(g[near, 2], t[near, 2]), "slope_vz": _slope(g[near, 5], t[near, 5])}


def exact_at(mock, log_c: torch.Tensor, x: torch.Tensor, v: torch.Tensor) -> dict[str, torch.Tensor]:
    """An evaluation set (``gradient_metrics``' form) at given points: the mock's exact gradients there."""
    _, gx, gv = log_df_gradients(mock, log_c, x, v)
    return {"w": torch.cat([x, v], -1), "grad": torch.cat([gx, gv], -1)}


def flow_path(name: str, family: str, seed: int) -> Path:
    return OUT / f"{name}_{family}_s{seed}.pt"


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {"flows": {}, "ensembles": {}, "e2e": {}}


def record(section: str, key: str, row: dict) -> None:
    """Add one row to df_accuracy.json: read, change and write under a lock (trainings run in parallel),
    written through a temporary file and a rename."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        res = load_results()
        res.setdefault(section, {})[key] = {**row, "commit": commit()}
        res["machine"] = {**machine(), "torch": torch.__version__, "threads": torch.get_num_threads()}
        res["commit"] = commit()
        atomic_write_text(RESULTS, json.dumps(res, indent=1) + "\n")


def cmd_train(name: str, family: str, seed: int) -> None:
    overrides, n, note = CANDIDATES[name]
    cfg = config(family, overrides)
    stars, _ = training_stars(family, n)
    ev = eval_set(family)
    t0 = time.perf_counter()
    flow, state = train_flow(stars, cfg.df, seed, cfg.catalogue.r_max_kpc, sun=cfg.frame.sun())
    wall = time.perf_counter() - t0
    OUT.mkdir(parents=True, exist_ok=True)
    _save(flow_path(name, family, seed), flow.state_dict())
    row = {"candidate": name, "family": family, "seed": seed, "overrides": overrides, "n_stars": n, "note": note,
           **gradient_metrics(evaluate_flows([flow], ev["w"], EVAL_BATCH)[1][0], ev), "train_wall_s": wall,
           "epochs": state.epoch, "best_epoch": state.best_epoch,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    record("flows", f"{name}/{family}/s{seed}", row)
    print(json.dumps(row))


def load_flow(name: str, family: str, seed: int):
    cfg = config(family, CANDIDATES[name][0])
    flow = build_flow(cfg.df, seed, cfg.catalogue.r_max_kpc, cfg.frame.sun())
    flow.load_state_dict(torch.load(flow_path(name, family, seed)))
    return flow.eval()


def cmd_e2e(name: str, family: str, seeds: list[int]) -> None:
    cfg = config(family, CANDIDATES[name][0])
    flows = [load_flow(name, family, s) for s in seeds]
    ev = eval_set(family)
    mean = evaluate_flows(flows, ev["w"], EVAL_BATCH)[1].mean(0)
    key = f"{name}/{family}/{'-'.join(map(str, seeds))}"
    t0 = time.perf_counter()
    cache = build_cache(flows, cfg.cache.n_points, cfg.cache.r_max_kpc, seed=5, batch=cfg.cache.batch_size)
    at_cache = exact_at(mock_galaxy(cfg), training_stars(family, CANDIDATES[name][1])[1], cache["x"], cache["v"])
    mean_at_cache = torch.cat([cache["grad_x"], cache["grad_v"]], -1)
    phi, omega_p, _ = train_potential(cache, cfg.potential, cfg.frame.sun(), seed=7,
                                      length_scale_kpc=cfg.catalogue.r_max_kpc)
    truth = truth_on_grid(mock_galaxy(cfg), cfg)
    sc = member_scalars(phi, omega_p, cfg, truth["rho_baryons"], cfg.frame.sun())
    t = truth["scalars"]
    row = {"candidate": name, "family": family, "seeds": seeds, "mean_of_flows": gradient_metrics(mean, ev),
           "mean_at_cache_points": gradient_metrics(mean_at_cache, at_cache),
           "flows_at_cache_points": [gradient_metrics(g, at_cache) for g in cache["flows_grad"]],
           "scalars": sc, "truth": t, "rho_ratio": sc["rho_R0"] / t["rho_R0"], "d_omega_p": sc["omega_p"] - t["omega_p"],
           "a_x_rel": sc["a_x"] / t["a_x"] - 1, "d_a_y": sc["a_y"] - t["a_y"], "d_a_z": sc["a_z"] - t["a_z"],
           "cache_and_potential_wall_s": time.perf_counter() - t0}
    record("e2e", key, row)
    print(json.dumps(row))


def flow_spread(singles: torch.Tensor, ev: dict) -> dict[str, float]:
    """How much K flows' gradients (K, N, 6) scatter about their mean: the median over points of the
    per-point standard deviation over the flows (ddof 1) relative to |g_true|, for grad_x and grad_v
    (a single flow's noise; the mean of K flows keeps about 1/sqrt(K) of it)."""
    ok = ev["grad"].abs().sum(-1) > 0
    g, t = singles[:, ok], ev["grad"][ok]
    dev = g - g.mean(0)
    k = g.shape[0]

    def spread(sl: slice) -> float:
        sd = (dev[..., sl].norm(dim=-1) ** 2).sum(0).div(k - 1).sqrt()
        return float((sd / t[:, sl].norm(dim=-1)).median())

    return {"gx_spread": spread(slice(0, 3)), "gv_spread": spread(slice(3, 6))}


def _caches_with_truth(run_dir: str):
    """Yield (cache name, its points' mean gradients (N, 6), every flow's (K, N, 6), the flows' member
    ids, ``exact_at`` its points) for every gradient cache of a finished run on a built-in mock."""
    import h5py

    from dpot_hpc.data.runfolder import RunFolder

    folder, cfg = RunFolder.open(run_dir)
    mock = mock_galaxy(cfg)
    with h5py.File(folder.mock, "r") as f:
        log_c = torch.from_numpy(f["truth"].attrs["log_c"])
    for path in folder.member_files("cache"):
        with h5py.File(path, "r") as f:
            x, v = torch.from_numpy(f["x"][()]), torch.from_numpy(f["v"][()])
            mean = torch.cat([torch.from_numpy(f["grad_x"][()]), torch.from_numpy(f["grad_v"][()])], -1)
            singles, ids = torch.from_numpy(f["flows/grad"][()]), json.loads(f.attrs["flows"])
        yield path.stem, mean, singles, ids, exact_at(mock, log_c, x, v)


def cache_errors(run_dir: str) -> tuple[dict[str, dict[str, float]], dict | None]:
    """``gradient_metrics`` of every gradient cache of a finished run on a built-in mock (at the cache's
    own points, where the potential sees them), of each single flow in the best-fit cache, and the
    flows' spread there (``flow_spread``); and the best-fit cache's ``averaging``."""
    out, avg = {}, None
    for name, mean, singles, ids, ev in _caches_with_truth(run_dir):
        out[name] = gradient_metrics(mean, ev)
        if singles.shape[0] > 1:
            out[name].update(flow_spread(singles, ev))
            for k in range(singles.shape[0]):
                out[f"{name}/flow{k}"] = gradient_metrics(singles[k], ev)
        if name == "best_fit":
            avg = averaging(singles, ids, ev)
    return out, avg


def component_slopes(g: torch.Tensor, ev: dict) -> list[float]:
    """Least-squares slope through the origin of fitted against true d ln f/dw_i for each of the six
    components (x, y, z, v_x, v_y, v_z) over every evaluation point where f > 0: below 1 where the fit
    is smoother than the truth along that direction, above 1 where sharper."""
    ok = ev["grad"].abs().sum(-1) > 0
    g, t = g[ok], ev["grad"][ok]
    return [_slope(g[:, i], t[:, i]) for i in range(6)]


def best_fit_at_true_stars(run_dir: str) -> dict[str, float | list[float]]:
    """The mean gradients of the flows that make a finished run's best-fit DF, at its family's evaluation
    stars (``eval_set``: the same points for every run of the family, so runs on other star sets or with
    other corrections compare point by point): ``gradient_metrics`` and ``component_slopes``."""
    import h5py

    from dpot_hpc.data.runfolder import RunFolder
    from dpot_hpc.ensemble.members import load_flow as load_member_flow

    folder, cfg = RunFolder.open(run_dir)
    with h5py.File(folder.member("cache", "best_fit"), "r") as f:
        ids = json.loads(f.attrs["flows"])
    flows = [load_member_flow(folder.member("df", i)) for i in ids]
    ev = eval_set(cfg.mock.family)
    g = evaluate_flows(flows, ev["w"], EVAL_BATCH)[1].mean(0)
    return {**gradient_metrics(g, ev), "slopes": component_slopes(g, ev)}


def averaging(singles: torch.Tensor, ids: list[str], ev: dict) -> dict | None:
    """How a cache's error falls with the number of flows it averages (``singles``: every flow's gradients,
    ``ids`` their members): ``gradient_metrics`` of the mean of the first n flows on the data (df_seed;
    n = 1, 2, 4, ..., all), of the bootstrap flows' mean and of all flows, and the flows' training noise
    against the bootstrap flows' spread: per gradient, sum over points of the df_seed flows' variance over
    that of the bootstrap flows (the share of the bootstrap spread that is training noise, the rest being
    the data's sampling noise). None without two df_seed and two bootstrap flows."""
    seeded = [i for i, m in enumerate(ids) if m.startswith("df_seed-")]
    boot = [i for i, m in enumerate(ids) if m.startswith("bootstrap-")]
    if len(seeded) < 2 or len(boot) < 2:
        return None
    sizes = sorted({*(2**j for j in range(len(seeded).bit_length()) if 2**j <= len(seeded)), len(seeded)})
    out = {f"mean_of_{n}_df_seed": gradient_metrics(singles[seeded[:n]].mean(0), ev) for n in sizes}
    out[f"mean_of_{len(boot)}_bootstrap"] = gradient_metrics(singles[boot].mean(0), ev)
    out["mean_of_all"] = gradient_metrics(singles.mean(0), ev)
    ok = ev["grad"].abs().sum(-1) > 0
    for name, sl in (("gx", slice(0, 3)), ("gv", slice(3, 6))):
        def variance(idx: list[int]) -> float:
            g = singles[idx][:, ok][..., sl]
            return float(((g - g.mean(0)) ** 2).sum() / (len(idx) - 1))
        out[f"{name}_training_share"] = variance(seeded) / variance(boot)
    return out


#: Bins of psi = (E_t - E_J)/sigma^2 of a lowered component (0 at its velocity edge, < 0 beyond it).
EDGE_BINS = ((-float("inf"), -1.0), (-1.0, 0.0), (0.0, 1.0), (1.0, 2.0), (2.0, float("inf")))


def edge_depth(family: str, ev: dict) -> torch.Tensor:
    """psi of the family's lowered-isothermal component with the lowest truncation energy at the evaluation
    stars: f of that component falls linearly to 0 at psi = 0 while the others go on, so the exact grad ln f
    jumps there (a lowered isothermal's g has a finite slope at its edge; a polytrope's, n > 1, has none)."""
    from dpot_hpc.physics.frames import helio_to_galcen
    from dpot_hpc.physics.mock import LoweredIsothermal

    mock = mock_galaxy(config(family, []))
    lowered = [c for c in mock.components if isinstance(c, LoweredIsothermal)]
    if not lowered:
        raise SystemExit(f"edges: family {family} has no lowered-isothermal component (no jump in grad ln f)")
    inner = min(lowered, key=lambda c: c.e_t_kms2)
    w = ev["w"].double()
    x_gc, v_gc = helio_to_galcen(w[:, :3], w[:, 3:], mock.sun)
    return (inner.e_t_kms2 - mock.jacobi_energy(x_gc, v_gc)) / inner.sigma_kms**2


def errors_by_edge_depth(g: torch.Tensor, ev: dict, psi: torch.Tensor, singles: torch.Tensor | None = None) -> list[dict]:
    """Per ``EDGE_BINS`` bin: the evaluation stars' share, the median relative error of grad_x and grad_v
    ln f of gradients g (N, 6) and, given every flow's (K, N, 6), the median relative spread of the flows
    about their mean (``flow_spread``'s measure)."""
    t = ev["grad"].to(g)
    ex, evv = _rel(g[:, :3], t[:, :3]), _rel(g[:, 3:], t[:, 3:])
    rows = []
    for lo, hi in EDGE_BINS:
        m = (psi > lo) & (psi <= hi)
        row = {"psi": [None if abs(b) == float("inf") else b for b in (lo, hi)], "share": float(m.double().mean()),
               "gx_err": float(ex[m].median()), "gv_err": float(evv[m].median())}
        if singles is not None and singles.shape[0] > 1:
            sub = {"w": ev["w"][m], "grad": t[m]}
            row.update(flow_spread(singles[:, m], sub))
        rows.append(row)
    return rows


def cmd_edges(family: str, flows: list[str]) -> None:
    """``errors_by_edge_depth`` of each flow (NAME:SEED) and of their mean, recorded under ``edges``."""
    ev = eval_set(family)
    psi = edge_depth(family, ev)
    pairs = [(f.split(":")[0], int(f.split(":")[1])) for f in flows]
    singles = torch.stack([evaluate_flows([load_flow(n, family, s)], ev["w"], EVAL_BATCH)[1][0] for n, s in pairs])
    mean = singles.mean(0)
    row = {"family": family, "flows": flows, "mean": {**gradient_metrics(mean, ev),
                                                      "by_edge_depth": errors_by_edge_depth(mean, ev, psi, singles)},
           "single": {f: {**gradient_metrics(g, ev), "by_edge_depth": errors_by_edge_depth(g, ev, psi)}
                      for f, g in zip(flows, singles)}}
    record("edges", f"{family}/{'+'.join(flows)}", row)
    print(json.dumps(row["mean"], indent=1))


def cmd_all(parallel: int) -> None:
    """Every candidate x family x seed, ``parallel`` trainings at a time (each in its own process, one
    thread), then the end-to-end runs; finished entries are skipped."""
    res = load_results()
    me = [sys.executable, __file__]
    jobs = [[*me, "train", c, "--family", f, "--seed", str(s)] for c in CANDIDATES for f in FAMILIES for s in SEEDS
            if f"{c}/{f}/s{s}" not in res["flows"]]
    jobs += [[*me, "e2e", c, "--family", f, "--seeds", *map(str, SEEDS)] for c in CANDIDATES for f in FAMILIES
             if f"{c}/{f}/{'-'.join(map(str, SEEDS))}" not in res["e2e"]]
    trains, e2es = [j for j in jobs if j[2] == "train"], [j for j in jobs if j[2] == "e2e"]
    for batch in (trains, e2es):
        running: list[subprocess.Popen] = []
        for job in batch:
            while len([p for p in running if p.poll() is None]) >= parallel:
                time.sleep(2)
            print(" ".join(job[2:]), flush=True)
            running.append(subprocess.Popen(job))
        for p in running:
            p.wait()


def cmd_table() -> str:
    res = load_results()
    lines = ["| candidate | family | seed | grad_x err | grad_v err | z-slope (abs z < 0.2) | v_z-slope | epochs | "
             "train wall s | peak RSS MB | commit |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["flows"].values():
        lines.append(f"| {r['candidate']} | {r['family']} | {r['seed']} | {r['gx_err']:.3f} | {r['gv_err']:.3f} | "
                     f"{r['slope_z']:.3f} | {r['slope_vz']:.3f} | {r['epochs']} | {r['train_wall_s']:.0f} | "
                     f"{r['peak_rss_mb']:.0f} | {r.get('commit', '-')} |")
    lines += ["", "| candidate | family | flows (mean) | grad_x err: stars / cache points | grad_v err: stars / cache "
              "points | z-slope | rho(R0)/truth | dOmega_p km/s/kpc | a_x rel. | da_y km/s/Myr | da_z km/s/Myr |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["e2e"].values():
        m, c = r["mean_of_flows"], r["mean_at_cache_points"]
        lines.append(f"| {r['candidate']} | {r['family']} | {len(r['seeds'])} | {m['gx_err']:.3f} / {c['gx_err']:.3f} | "
                     f"{m['gv_err']:.3f} / {c['gv_err']:.3f} | {m['slope_z']:.3f} | {r['rho_ratio']:.3f} | "
                     f"{r['d_omega_p']:+.3f} | {r['a_x_rel']:+.4f} | {r['d_a_y']:+.4f} | {r['d_a_z']:+.4f} |")
    text = "\n".join(lines) + "\n"
    notes = "\n".join(f"- `{k}`: {v[2]} ({' '.join(v[0]) or 'no overrides'})" for k, v in CANDIDATES.items())
    atomic_write_text(TABLE, f"# DF gradient accuracy (`benchmarks/df_accuracy.py`; file last written at commit "
                      f"{res.get('commit', '?')}; rows name their own commit where it was recorded: '-' for rows "
                      f"from before rows carried one, docs/recovery.md says which commits those were)\n\n"
                     f"Candidates:\n{notes}\n\n{text}")
    print(text)
    return text


def main() -> None:
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train")
    p.add_argument("name", choices=sorted(CANDIDATES))
    p.add_argument("--family", choices=sorted(MOCK_FAMILIES), default=FAMILIES[0],
                   help="a tuning family, or the held-out one (never used to choose a default)")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("e2e")
    p.add_argument("name", choices=sorted(CANDIDATES))
    p.add_argument("--family", choices=FAMILIES, default=FAMILIES[0])
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p = sub.add_parser("all")
    p.add_argument("--parallel", type=int, default=2)
    sub.add_parser("table")
    p = sub.add_parser("run")
    p.add_argument("run_dir")
    p = sub.add_parser("edges")
    p.add_argument("flows", nargs="+", metavar="NAME:SEED")
    p.add_argument("--family", choices=FAMILIES, default="thin_thick_lowered")
    a = ap.parse_args()
    if a.cmd == "train":
        cmd_train(a.name, a.family, a.seed)
    elif a.cmd == "e2e":
        cmd_e2e(a.name, a.family, a.seeds)
    elif a.cmd == "run":
        for name, m in cache_errors(a.run_dir)[0].items():
            print(f"{name:28s} " + " ".join(f"{k} {v:.3f}" for k, v in m.items()))
    elif a.cmd == "edges":
        cmd_edges(a.family, a.flows)
    elif a.cmd == "all":
        cmd_all(a.parallel)
    else:
        cmd_table()


if __name__ == "__main__":
    main()
