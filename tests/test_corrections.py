"""The correction for the observational-noise bias: the extrapolation to zero observational noise
(SIMEX, issue 15), and the DR3-like noise of the mock."""

import json
import math
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from dpot_hpc.config import ConfigError, load_config
from dpot_hpc.ensemble.statistics import simex
from dpot_hpc.physics.gaia import dr3_like_errors
from dpot_hpc.physics.scalars import SCALARS


def _best(values: dict[str, float], band: float) -> dict:
    return {k: {"median": v, "terms": {"df": band}} for k, v in values.items()}


def _members(*values: float) -> list[dict[str, float]]:
    return [{k: v for k in SCALARS} for v in values]


def test_simex_corrects_the_best_estimate_by_the_single_flow_slope():
    # single flows: s(lambda) = 2 - 0.5 lambda (means 2, 1.5, 1 with a spread of +-0.1 at each level);
    # the bagged best estimate 2.2 is corrected by the line from 0 to -1, +0.5
    best = _best({k: 2.2 for k in SCALARS}, band=0.1)
    out = simex(best, _members(1.9, 2.1), {1.0: _members(1.4, 1.6), 2.0: _members(0.9, 1.1)})
    for k in SCALARS:
        assert out[k]["slope"] == pytest.approx(-0.5, rel=1e-12)
        assert out[k]["value"] == pytest.approx(2.7, rel=1e-12)
        assert out[k]["correction"] == pytest.approx(0.5, rel=1e-12)
        # pooled sd sqrt(0.06 / 3); sum n (lambda - 1)^2 = 4: Var(b) = 0.02 / 4
        assert out[k]["uncertainty"] == pytest.approx(math.sqrt(0.02 / 4), rel=1e-12)
        assert out[k]["points"] == pytest.approx({"0": 2.0, "1": 1.5, "2": 1.0})


def test_simex_weights_the_levels_by_their_members():
    # two members at lambda = 0 and one at 2: the weighted mean lambda is 2/3, the slope is the
    # difference of the level means over 2 whatever the weights (two levels)
    best = _best({k: 1.0 for k in SCALARS}, band=0.1)
    out = simex(best, _members(1.0, 1.2), {2.0: _members(0.7)})
    assert out["a_x"]["slope"] == pytest.approx((0.7 - 1.1) / 2, rel=1e-12)
    assert out["a_x"]["uncertainty"] == pytest.approx(math.sqrt(0.02) / math.sqrt(2 * (2 / 3) ** 2 + (4 / 3) ** 2))


def test_dr3_like_errors_follow_the_documented_magnitude_trend():
    rng = np.random.default_rng(0)
    bright, faint = dr3_like_errors(np.full(20000, 8.0), rng), dr3_like_errors(np.full(20000, 16.0), rng)
    assert np.median(bright["parallax_error"]) == pytest.approx(0.02, rel=0.02)
    assert np.median(faint["parallax_error"]) == pytest.approx(0.05, rel=0.02)
    assert np.median(faint["radial_velocity_error"]) == pytest.approx(3.0, rel=0.02)
    assert np.std(np.log(bright["pmra_error"])) == pytest.approx(0.15, rel=0.05)
    twice = dr3_like_errors(np.full(20000, 16.0), np.random.default_rng(0), scale=2.0)
    assert np.median(twice["parallax_error"]) == pytest.approx(0.10, rel=0.02)


TINY = ["mock.n_stars=4000", "ensemble.df_seed=2", "df.transforms=2", "df.hidden=[16, 16]", "df.max_epochs=2",
        "cache.n_points=1500", "potential.hidden=[16, 16]", "potential.steps=30", "summary.grid_spacing_kpc=0.05",
        "run.threads=1", "run.processes=1", "ensemble.bootstrap=0", "ensemble.potential_seed=0"]


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    """A tiny run on the noisy mock (Gaia format) with two noise levels."""
    run_dir = tmp_path_factory.mktemp("corrections") / "run"
    extra = ["mock.noise=true", "catalogue.format=gaia", "ensemble.obs_noise=1", "ensemble.obs_noise_levels=[1, 2]",
             f"run.dir={run_dir}"]
    sets = [a for s in [*TINY, *extra] for a in ("--set", s)]
    p = subprocess.run([sys.executable, "-m", "dpot_hpc", "run", "-q", *sets], capture_output=True, text=True,
                       timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    return run_dir


def test_the_noisy_mock_scatters_its_observables_by_their_quoted_errors(noisy_run):
    with h5py.File(noisy_run / "mock.h5") as f:
        for name in ("parallax", "pmra", "radial_velocity"):
            pull = (f[name][()] - f[f"truth/observables/{name}"][()]) / f[f"{name}_error"][()]
            assert abs(pull.mean()) < 0.05 and 0.95 < pull.std() < 1.05, name  # 4000 stars: 1/sqrt(4000) ~ 0.016
        assert json.loads(f["truth"].attrs["noise"]) == {"applied": True, "scale": 1.0}
        # the 4000 stars drawn inside the 1 kpc sphere come first, then the shell beyond it: noisy
        # parallaxes scatter stars out of the sphere and, as in a real catalogue, into it
        exact, noisy = f["truth/observables/parallax"][()], f["parallax"][()]
        assert (exact[:4000] > 1.0).all() and (exact[4000:] < 1.0).all()
        out, into = (noisy[:4000] < 1.0).sum(), (noisy[4000:] > 1.0).sum()
        assert out > 50 and 0.7 < into / out < 2.0  # ~4% of the sphere's stars each way at DR3-like errors


def test_summary_reports_simex_and_keeps_the_raw_value(noisy_run):
    s = json.loads((noisy_run / "summary.json").read_text())
    means = {lv: np.mean([m["rho_R0"] for mid, m in s["members"].items() if mid.rsplit("-", 1)[0] == p])
             for lv, p in ((0, "df_seed"), (1, "obs_noise"), (2, "obs_noise_x2"))}
    # weights 2, 1, 1 at lambda = 0, 1, 2: weighted mean lambda 0.75
    lam_bar = 0.75
    sxx = 2 * lam_bar**2 + (1 - lam_bar) ** 2 + (2 - lam_bar) ** 2
    ybar = (2 * means[0] + means[1] + means[2]) / 4
    slope = (2 * (0 - lam_bar) * (means[0] - ybar) + (1 - lam_bar) * (means[1] - ybar) + (2 - lam_bar) * (means[2] - ybar)) / sxx
    s0 = s["best"]["rho_R0"]["median"]
    assert s["simex"]["rho_R0"]["value"] == pytest.approx(s0 - slope, rel=1e-9)
    assert s["final"]["rho_R0"]["how"] == "SIMEX" and s["final"]["rho_R0"]["value"] == s["simex"]["rho_R0"]["value"]
    assert set(s["final"]["rho_R0"]["terms"]) == {"df", "simex"}  # the DF's own band and the correction's
    assert sorted(s["pipelines"]) == ["df_seed", "obs_noise", "obs_noise_x2"]


def test_simex_without_single_flows_on_the_data_is_a_config_error():
    with pytest.raises(ConfigError, match="ensemble.obs_noise_levels: .*df_seed > 0"):
        load_config(None, ["catalogue.format=gaia", "ensemble.obs_noise=1", "ensemble.obs_noise_levels=[1, 2]",
                           "ensemble.df_seed=0"])


def test_band_degrees_of_freedom_combine_by_welch_satterthwaite():
    from dpot_hpc.ensemble.statistics import effective_dof, uncertainty

    assert effective_dof({"df": 0.3}, {"df": 3}) == 3  # one term: its own
    # two equal terms with 3 dof each: (2 s^2)^2 / (2 s^4 / 3) = 6
    assert effective_dof({"df": 0.3, "simex": 0.3}, {"df": 3, "simex": 3}) == 6
    # a term 10x smaller barely adds: 1.01^2 / (1/3 + 1e-4/2) = 3.06 -> 3
    assert effective_dof({"df": 1.0, "x0_v0": 0.1}, {"df": 3, "x0_v0": 2}) == 3
    u = uncertainty({"df": 1.0, "simex": math.inf}, {"df": 3, "simex": 0})
    assert u["dof"] == 0 and u["half_width_95"] == math.inf  # an unmeasured term: no band, not a false one
