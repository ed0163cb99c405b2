"""The plan: members per pipeline, distinct seeds, and the scheduler simulation behind `plan --ranks`."""

import pytest

from dpot_hpc.config import load_config
from dpot_hpc.data.runfolder import RunFolder
from dpot_hpc.ensemble.plan import plan_rows
from dpot_hpc.ensemble.schedule import REFERENCE_COSTS_S, simulate


def test_plan_members_and_seeds():
    cfg = load_config(None, ["ensemble.df_seed=4", "ensemble.potential_seed=3", "ensemble.bootstrap=2",
                             "ensemble.x0_v0=2", "ensemble.df_seed_potentials=true"])
    rows = plan_rows(cfg, RunFolder.of(cfg))
    by_stage = {s: [r for r in rows if r["stage"] == s] for s in ("df", "cache", "potential")}
    assert len(by_stage["df"]) == 4 + 2
    assert len(by_stage["cache"]) == 1 + 4 + 2  # best fit + one per single flow with its own potential
    assert len(by_stage["potential"]) == 3 + 4 + 2 + 2
    assert len({r["seed"] for r in rows}) == len(rows)
    other = load_config(None, ["run.seed=5"])
    assert plan_rows(other, RunFolder.of(other))[0]["seed"] != rows[0]["seed"]


def test_scheduler_simulation_is_list_scheduling():
    cfg = load_config(None, ["ensemble.df_seed=8", "ensemble.potential_seed=8",
                             "ensemble.bootstrap=0", "ensemble.df_seed_potentials=false", "df.max_epochs=25"])
    one = simulate(cfg, 1, 200_000)
    eight = simulate(cfg, 8, 200_000)
    three = simulate(cfg, 3, 200_000)
    c_df = REFERENCE_COSTS_S["df"]
    assert one["df"]["wall_s"] == pytest.approx(8 * c_df)
    assert eight["df"]["wall_s"] == pytest.approx(c_df) and eight["df"]["idle_s"] == pytest.approx(0)
    assert three["df"]["wall_s"] == pytest.approx(3 * c_df)  # 8 equal members on 3 ranks: 3 rounds
    assert three["df"]["idle_s"] == pytest.approx(3 * 3 * c_df - 8 * c_df)
    assert eight["cache"]["idle_s"] == pytest.approx(7 * eight["cache"]["wall_s"])  # one cache, 7 ranks wait
    assert one["total_s"] == pytest.approx(one["df"]["wall_s"] + one["cache"]["wall_s"] + one["potential"]["wall_s"])


def test_calibration_runs_repeat_the_plan_one_after_the_other():
    cfg = load_config(None, ["calibration.realizations=2", "calibration.families=[barred_isothermal, thin_thick_lowered]"])
    plain = simulate(load_config(None, []), 4, 200_000)
    calibrated = simulate(cfg, 4, 200_000)
    assert calibrated["calibration"] == {"runs": 4, "wall_s": pytest.approx(4 * plain["total_s"])}
    assert calibrated["total_s"] == pytest.approx(5 * plain["total_s"])
    assert plain["calibration"]["runs"] == 0


def test_flows_fitted_through_the_errors_are_planned_at_their_measured_cost():
    from dpot_hpc.ensemble.schedule import DECONVOLVE_COST_FACTOR
    noisy = ["catalogue.format=gaia", "mock.noise=true"]
    plain = simulate(load_config(None, noisy), 2, 200_000)
    deconvolving = simulate(load_config(None, [*noisy, "df.deconvolve=true"]), 2, 200_000)
    assert deconvolving["df"]["wall_s"] == pytest.approx(DECONVOLVE_COST_FACTOR * plain["df"]["wall_s"])
    assert deconvolving["potential"]["wall_s"] == pytest.approx(plain["potential"]["wall_s"])
