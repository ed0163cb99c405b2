"""`dpot-hpc report` on a tiny finished run: every figure is a real PNG, index.html links only to files
that exist and shows summary.json's numbers, summary.h5 holds the maps with units, the significance
maps are centred on 0 exactly when they should be, and a real headless Chromium shows the page."""

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from matplotlib.image import imread

import dpot_hpc
from conftest import skip_loudly_unless_required
from dpot_hpc.data.runfolder import REPORT_FIGURES, RunFolder
from dpot_hpc.ensemble.maps import PLANES
from dpot_hpc.models.potential import PotentialNet, acceleration, evaluate
from dpot_hpc.physics.frames import SunFrame
from dpot_hpc.physics.scalars import SCALARS
from dpot_hpc.report.binned import binned_mean_significance, counts, poisson_significance
from dpot_hpc.report.html import DIGITS
from dpot_hpc.report.projections import project

TINY = ["mock.n_stars=4000", "ensemble.df_seed=2", "df.transforms=2", "df.hidden=[16, 16]", "df.max_epochs=2",
        "df.batch_size=512", "cache.n_points=3000", "ensemble.potential_seed=2", "ensemble.bootstrap=2",
        "potential.hidden=[16, 16]", "potential.steps=30", "potential.batch_size=256",
        "potential.penalty_points=32", "summary.grid_spacing_kpc=0.05", "run.threads=1", "run.processes=1", "ensemble.df_seed_potentials=false"]


def dpot(*args, cwd, python_prefix=()):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, *python_prefix, "-m", "dpot_hpc.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished tiny run; `dpot-hpc run` writes the report at its end."""
    root = tmp_path_factory.mktemp("report")
    run_dir = root / "run"
    sets = [a for s in [*TINY, f"run.dir={run_dir}"] for a in ("--set", s)]
    p = dpot("run", *sets, cwd=root)
    assert p.returncode == 0, p.stderr[-3000:]
    return run_dir, p


# --- PNG and HTML reading helpers ---------------------------------------------------------------------
def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG whose every chunk's CRC is right and which ends with IEND."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG signature"
    pos, kinds, size = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path}: bad CRC in chunk {kind}"
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        kinds.append(kind)
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds, f"{path}: chunks {kinds}"
    return size


class PageParser(HTMLParser):
    """Every href/src, every number cell (data-q, data-stat[, data-pipeline]) with its text, scripts."""

    def __init__(self):
        super().__init__()
        self.links, self.numbers, self.scripts, self._open = [], [], 0, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.links += [a[k] for k in ("href", "src") if k in a]
        self.scripts += tag == "script"
        if "data-q" in a:
            self._open = (a.get("data-pipeline"), a["data-q"], a["data-stat"])
            self.numbers.append([self._open, ""])

    def handle_data(self, data):
        if self._open is not None:
            self.numbers[-1][1] += data

    def handle_endtag(self, tag):
        self._open = None


def parse_index(folder: RunFolder) -> PageParser:
    parser = PageParser()
    parser.feed(folder.report_index.read_text())
    return parser


# --- the report of the tiny run -----------------------------------------------------------------------
def test_run_writes_every_figure_as_a_png_of_sensible_size(tiny_run):
    run_dir, p = tiny_run
    folder = RunFolder(run_dir)
    assert "report: " in p.stderr and "index.html" in p.stderr
    for name in REPORT_FIGURES:
        path = folder.report_figure(name)
        w, h = png_size(path)
        assert 400 <= w <= 2500 and 250 <= h <= 2500, (name, w, h)
        assert 20_000 < path.stat().st_size < 1_000_000, (name, path.stat().st_size)


def test_figures_are_not_blank(tiny_run):
    for name in REPORT_FIGURES:
        img = imread(RunFolder(tiny_run[0]).report_figure(name))[..., :3]
        colours = np.unique((img.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
        assert len(colours) > 50, f"{name}: {len(colours)} colours"


def test_index_links_only_to_files_that_exist(tiny_run):
    folder = RunFolder(tiny_run[0])
    page = parse_index(folder)
    targets = [t for t in page.links if not t.startswith("#")]
    assert {f"{n}.png" for n in REPORT_FIGURES} <= set(targets)
    assert "../summary.json" in targets
    for t in targets:
        assert "://" not in t and not t.startswith("/"), f"not a relative link: {t}"
        assert (folder.report / t).resolve().is_file(), f"index.html links to a missing file: {t}"
    assert page.scripts == 0


def test_index_numbers_equal_summary_json(tiny_run):
    folder = RunFolder(tiny_run[0])
    summary = json.loads(folder.summary_json.read_text())
    cells = parse_index(folder).numbers
    seen = 0
    for (pipe, q, stat), text in cells:
        if pipe is not None:
            want = summary["pipelines"][pipe][q][stat]
        elif stat == "truth":
            want = summary["truth"][q]
        elif stat == "error":
            want = summary["final"][q]["value"] - summary["truth"][q]
        elif stat in ("median", "n"):
            want = summary["best"][q][stat]
        else:
            want = summary["final"][q][stat]
        # DIGITS significant digits: the shown number is within half a unit of the last digit
        assert float(text) == pytest.approx(want, rel=0.5 * 10 ** (1 - DIGITS), abs=1e-300), (pipe, q, stat, text, want)
        seen += 1
    n_pipes = len(summary["pipelines"])
    assert seen == len(SCALARS) * (6 + 2) + len(SCALARS) * 2 * n_pipes  # reported (+ truth, error) and pipelines
    assert n_pipes == 2


def test_summary_h5_has_the_maps_with_units(tiny_run):
    run_dir = tiny_run[0]
    folder = RunFolder(run_dir)
    pot = dpot_hpc.load_potential(run_dir)
    best = dpot_hpc.Potential([m for m in pot.members if m.id.startswith("potential_seed")])
    with h5py.File(folder.summary_h5) as f:
        g = f["maps"]
        assert json.loads(g.attrs["members"]) == ["potential_seed-000", "potential_seed-001"]
        for plane, (h, v) in PLANES.items():
            m = g[plane]
            x = m["x"][()]
            assert m["x"].attrs["unit"] == "kpc" and x.shape == (37, 37, 3) and np.all(x[..., 3 - h - v] == 0)
            for name, unit in [("rho", "Msun/pc^3"), ("rho_sigma", "Msun/pc^3"), ("accel", "km/s/Myr"),
                               ("accel_sigma", "km/s/Myr"), ("phi", "(km/s)^2"), ("phi_truth", "(km/s)^2"),
                               ("rho_truth", "Msun/pc^3"), ("accel_truth", "km/s/Myr"), ("rho_rel_error", "1")]:
                assert m[name].attrs["unit"] == unit, (plane, name)
            inside = np.linalg.norm(x, axis=-1) < 0.9
            rho = m["rho"][()]
            assert np.all(np.isfinite(rho[inside])) and np.all(np.isnan(rho[~inside]))
            assert np.all(m["rho_sigma"][()][inside] >= 0)
            # the uncertainty is the band's DF term: the bootstrap members' standard deviation times
            # sqrt(1 + 1/K), K = 4 flows in the best-fit DF (2 df_seed + 2 bootstrap)
            assert json.loads(g.attrs["band_members"]) == ["bootstrap-000", "bootstrap-001"]
            rho_b = dpot_hpc.load_potential(run_dir, "bootstrap").evaluate(x[inside][::50])["rho"]
            assert np.allclose(m["rho_sigma"][()][inside][::50], rho_b.std(axis=0, ddof=1) * np.sqrt(1 + 1 / 4),
                               rtol=1e-5, atol=1e-12)
            # the median map equals the API's ensemble median at the same points
            pts = x[inside][::50]
            assert np.allclose(m["accel"][()][inside][::50], best.acceleration(pts).value, rtol=1e-5, atol=1e-9)
            assert np.allclose(rho[inside][::50], best.density(pts).value, rtol=1e-5, atol=1e-9)
            # the truth at the Sun equals mock.h5's own truth grid there (computed when the mock was drawn)
            with h5py.File(run_dir / "mock.h5") as mf:
                tx, trho = mf["truth/grid/x"][()], mf["truth/grid/rho"][()]
            sun_grid = np.flatnonzero(np.all(tx == 0, axis=1))[0]
            c = x.shape[0] // 2
            assert m["rho_truth"][c, c] == pytest.approx(trho[sun_grid], rel=1e-10)


def test_report_on_a_copied_folder_without_the_stars(tiny_run, tmp_path):
    """A folder copied elsewhere (run.dir in its config.yaml points to the old place) without
    prepared.h5: every other figure is drawn, the DF check is listed as not drawn, naming the file."""
    copy = tmp_path / "copied"
    shutil.copytree(tiny_run[0], copy, ignore=shutil.ignore_patterns("prepared.h5", "report"))
    p = dpot("report", str(copy), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    folder = RunFolder(copy)
    for name in REPORT_FIGURES:
        assert folder.report_figure(name).is_file() == (name != "df_check"), name
    page = folder.report_index.read_text()
    assert "Not drawn" in page and "prepared.h5" in page
    for t in parse_index(folder).links:
        assert t.startswith("#") or (folder.report / t).resolve().is_file(), t


def test_without_matplotlib_the_report_is_skipped_with_a_notice(tiny_run, tmp_path):
    """matplotlib made unimportable (sys.modules entry None): one line, exit status 0, nothing written."""
    copy = tmp_path / "copied"
    shutil.copytree(tiny_run[0], copy, ignore=shutil.ignore_patterns("report"))
    block = ["-c", "import sys; sys.modules['matplotlib'] = None; import runpy; "
                   "runpy.run_module('dpot_hpc.cli', run_name='__main__')"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.run([sys.executable, *block, "report", str(copy)], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    out = (p.stdout + p.stderr).strip().splitlines()
    assert out == ["dpot-hpc: report skipped: matplotlib is not installed (pip install 'dpot-hpc[plots]')"]
    assert not (copy / "report").exists()


# --- the maps' statistics (pure functions, known densities) ---------------------------------------------
def _significance_of(data, model, n_bins=20, lim=2.5, min_count=100):
    """Significance map of data against model samples, and the bins with at least min_count stars."""
    edges = np.linspace(-lim, lim, n_bins + 1)
    nd, nm = counts(data[:, 0], data[:, 1], edges, edges), counts(model[:, 0], model[:, 1], edges, edges)
    sig = poisson_significance(nd, nm, len(data) / len(model))
    centres = 0.5 * (edges[1:] + edges[:-1])
    return sig, nd >= min_count, np.broadcast_to(centres[:, None], sig.shape)


def test_poisson_significance_of_the_same_density_is_centred_on_zero():
    """Stars and model samples from one 2-D Gaussian (the model a flow that fits its training set).

    In bins with n >= 100 stars each value is (n_flow - n_data) over the square root of its own
    Poisson variance, close to a unit normal: the mean over B bins scatters by 1/sqrt(B), its bias
    from using the observed counts in the denominator is below 1/(2 sqrt(100)) = 0.05, and the rms
    scatters by about sqrt(1/(2B)) around 1. Tolerances: 4 standard errors plus the bias bound."""
    rng = np.random.default_rng(5)
    data, model = rng.normal(size=(100_000, 2)), rng.normal(size=(200_000, 2))
    sig, ok, _ = _significance_of(data, model)
    b = int(ok.sum())
    assert b > 100
    assert abs(np.mean(sig[ok])) < 4 / np.sqrt(b) + 0.05
    assert abs(np.sqrt(np.mean(sig[ok] ** 2)) - 1) < 4 * np.sqrt(1 / (2 * b)) + 0.05


def test_poisson_significance_of_a_shifted_sample_is_not():
    """Stars shifted by 0.3 sigma along the first axis. The renormalisation keeps the total counts
    equal, so the mean over the whole map stays near 0 for a pure shift; but on the side the stars
    moved to they outnumber the model: the mean there lies below 5 times the null tolerance above,
    and the values spread far more than a unit normal's."""
    rng = np.random.default_rng(6)
    data, model = rng.normal(size=(100_000, 2)) + [0.3, 0.0], rng.normal(size=(200_000, 2))
    sig, ok, a = _significance_of(data, model)
    right = ok & (a > 0.3)
    tol = 4 / np.sqrt(right.sum()) + 0.05
    assert np.mean(sig[right]) < -5 * tol
    assert np.sqrt(np.mean(sig[ok] ** 2)) > 3


def test_poisson_significance_without_model_noise_is_the_papers():
    nd, nm = np.array([[100.0, 0.0], [4.0, 0.0]]), np.array([[1210.0, 30.0], [0.0, 0.0]])
    sig = poisson_significance(nd, nm, 1e-9)
    assert sig[0, 0] == pytest.approx((1210e-9 - 100) / 10, rel=1e-6)
    assert sig[1, 0] == pytest.approx(-2.0, rel=1e-6)
    assert np.isnan(sig[1, 1]) and sig[0, 1] > 0  # empty in both: blank; model only: positive


def test_binned_mean_significance_is_mean_over_standard_error():
    rng = np.random.default_rng(7)
    a, b = rng.uniform(0, 1, 40_000), rng.uniform(0, 1, 40_000)
    edges = np.linspace(0, 1, 5)
    values = rng.normal(size=a.size) + np.where(a > 0.5, 0.1, 0.0)  # 0.1 sigma offset on one side
    mean, sig, n = binned_mean_significance(a, b, values, edges, edges)
    assert n.sum() == a.size
    # 2500 points per bin: the offset side sits at 0.1 * sqrt(2500) = 5 standard errors, the other at 0
    assert np.all(np.abs(sig[:2]) < 4) and np.all(np.abs(sig[2:] - 5) < 4)
    assert np.allclose(mean[2:], 0.1, atol=0.1)
    empty = binned_mean_significance(a[:5], b[:5], values[:5], edges, edges)[1]
    assert np.all(np.isnan(empty))  # fewer than 10 points per bin: blank


def test_projections_of_the_sun_and_of_a_point_at_l_90():
    sun = SunFrame()
    w = np.array([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0, 0.0, 0.0]])
    v_r, v_phi = project(w, "vR_vphi", sun)
    assert v_r[0] == pytest.approx(-12.9, abs=1e-6)  # the Sun moves towards the centre: v_R < 0
    assert v_phi[0] == pytest.approx(245.6, abs=1e-3)  # and with Galactic rotation
    l, sinb = project(w, "l_sinb", sun)
    assert l[1] == pytest.approx(90.0) and sinb[1] == pytest.approx(0.0, abs=1e-12)


# --- a real browser ----------------------------------------------------------------------------------
def test_index_opens_in_headless_chromium(tiny_run, tmp_path):
    from chromium import find_chromium, open_page

    exe = find_chromium()
    if exe is None:
        skip_loudly_unless_required("DPOT_REQUIRE_BROWSER", "browser test", "chromium is not installed",
                                    "Install it with `apt-get install -y chromium` (as .ci/run does).")
    folder = RunFolder(tiny_run[0])
    shot = tmp_path / "report.png"
    state = open_page(exe, folder.report_index, shot)
    srcs = {i["src"] for i in state["images"]}
    assert srcs == {f"{n}.png" for n in REPORT_FIGURES}
    for img in state["images"]:
        assert img["complete"] and img["naturalWidth"] > 0 and img["naturalHeight"] > 0, img
    summary = json.loads(folder.summary_json.read_text())
    for k in SCALARS:
        assert f"{summary['best'][k]['median']:.{DIGITS}g}" in state["text"], k
        assert f"{summary['final'][k]['value']:.{DIGITS}g}" in state["text"], k
    w, h = png_size(shot)
    assert w == 1400 and h > 2000
    print(f"screenshot: {shot}")


def test_acceleration_by_backward_pass_equals_the_one_pass_fields():
    """The residual map's cheap acceleration equals ``evaluate``'s (float32 network)."""
    torch.manual_seed(3)
    net = PotentialNet([16, 16], 1.0, 1e4)
    x = torch.rand(500, 3, dtype=torch.float64) * 2 - 1
    a = acceleration(net, x, batch=128)
    assert a.shape == (500, 3)
    assert torch.allclose(a, evaluate(net, x)["accel"], rtol=1e-4, atol=1e-2)


def test_evaluate_gives_the_best_estimates_standard_deviation(tiny_run, tmp_path):
    """`evaluate` on a run's best estimate also writes *_sigma, the DF term of the band at each point
    (as summary.h5's maps): the bootstrap members' standard deviation times sqrt(1 + 1/K), K = 4."""
    run_dir = tiny_run[0]
    pts = np.array([[0.1, 0.0, 0.0], [0.3, -0.2, 0.1], [-0.5, 0.1, -0.4]])
    np.savetxt(tmp_path / "pts.txt", pts)
    p = dpot("evaluate", str(run_dir), "--points", str(tmp_path / "pts.txt"), "--out", str(tmp_path / "o.h5"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    boot = dpot_hpc.load_potential(run_dir, "bootstrap")
    rho_b = boot.evaluate(pts)["rho"]
    with h5py.File(tmp_path / "o.h5") as f:
        assert f.attrs["band_members"] == "bootstrap-000,bootstrap-001"
        assert f["rho_sigma"].attrs["unit"] == "Msun/pc^3" and np.all(f["rho_sigma"][()] > 0)
        assert np.allclose(f["rho_sigma"][()], rho_b.std(axis=0, ddof=1) * np.sqrt(1 + 1 / 4), rtol=1e-5)
