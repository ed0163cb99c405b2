"""dpot_hpc.interop with the real gala and galpy: the mock's exact barred potential, turned at its
Omega_p, gives orbits that conserve the Jacobi energy and agree with an independent rotating-frame
integration; the wrapped fitted potential equals the API's fields; galpy's forces equal gala's."""

import subprocess
import sys
import warnings

import astropy.coordinates as coord
import astropy.units as u
import numpy as np
import pytest
import torch
from conftest import skip_loudly_unless_required

from dpot_hpc.api import Potential
from dpot_hpc.ensemble.members import PotentialMember
from dpot_hpc.interop import (MissingDependencyError, OutsideFitWarning, PatternField, galcen_to_galpy,
                              jacobi_energy, pattern_frame, to_gala, to_galpy)
from dpot_hpc.interop.field import KMS_TO_KPC_PER_MYR
from dpot_hpc.interop.galpy_potential import galpy_ro_kpc, galpy_time_myr
from dpot_hpc.interop.optional import require
from dpot_hpc.models.potential import PotentialNet
from dpot_hpc.physics.frames import SunFrame, helio_positions_to_galcen, helio_vectors_to_galcen

try:  # the test extra installs them; CI sets DPOT_REQUIRE_INTEROP so that they cannot skip there
    import gala.dynamics as gd
    from gala.units import UnitSystem
    import galpy.orbit as galpy_orbit
    import galpy.potential as galpy_potential
    from galpy.util.conversion import get_physical
    from scipy.integrate import solve_ivp
    MISSING = None
except ImportError as exc:
    MISSING = str(exc)


@pytest.fixture(autouse=True, scope="module")
def _libraries():
    if MISSING:
        skip_loudly_unless_required("DPOT_REQUIRE_INTEROP", "gala/galpy interop tests", MISSING,
                                    "Install them with pip install -e '.[test]' (gala and galpy are in the test extra).")

#: A star near the Sun (astropy Galactocentric, kpc and km/s), on a disc orbit that the bar perturbs:
#: its energy and L_z change by 0.4% and 1.4% in 100 Myr, E_J does not.
X0 = np.array([-8.1, 0.3, 0.05])
V0 = np.array([20.0, 215.0, 10.0])
TIMES_MYR = np.linspace(0.0, 100.0, 11)
TIGHT = dict(atol=1e-12, rtol=1e-12)


def _gala_orbit(gpot):
    w0 = gd.PhaseSpacePosition(pos=X0 * u.kpc, vel=V0 * u.km / u.s)
    return gpot.integrate_orbit(w0, t=TIMES_MYR * u.Myr, Integrator="dopri853", Integrator_kwargs=TIGHT)


@pytest.fixture(scope="module")
def mock_orbit(mock):
    gpot = to_gala(mock)
    return gpot, _gala_orbit(gpot)


def _rotating_frame_reference(mock):
    """The orbit integrated independently (scipy) in the bar's frame, Omega = -Omega_p z (rad/Myr):
    dv'/dt = -grad Phi0(x') - 2 Omega x v' - Omega x (Omega x x'), the force by autograd of the mock."""
    om = np.array([0.0, 0.0, -mock.omega_p_kms_kpc * KMS_TO_KPC_PER_MYR])

    def rhs(_, w):
        x = torch.tensor(w[None, :3], requires_grad=True)
        (g,) = torch.autograd.grad(mock.galaxy.phi(x).sum(), x)
        acc = -g[0].numpy() * KMS_TO_KPC_PER_MYR**2 - 2 * np.cross(om, w[3:]) - np.cross(om, np.cross(om, w[:3]))
        return np.concatenate([w[3:], acc])

    v_rot = V0 * KMS_TO_KPC_PER_MYR - np.cross(om, X0)
    sol = solve_ivp(rhs, (0.0, TIMES_MYR[-1]), np.concatenate([X0, v_rot]), method="DOP853", t_eval=TIMES_MYR,
                    **TIGHT)
    assert sol.success
    x_rot, v_rel = sol.y[:3].T, sol.y[3:].T
    phi0 = mock.galaxy.phi(torch.from_numpy(x_rot)).numpy() * KMS_TO_KPC_PER_MYR**2
    e_j = 0.5 * (v_rel**2).sum(-1) + phi0 - 0.5 * (np.cross(om, x_rot) ** 2).sum(-1)
    return x_rot, e_j


def test_gala_orbit_in_the_turning_mock_conserves_the_jacobi_energy(mock, mock_orbit):
    gpot, orbit = mock_orbit
    e_j = jacobi_energy(gpot, orbit).to_value(u.kpc**2 / u.Myr**2)
    assert np.ptp(e_j) / abs(e_j[0]) < 1e-8  # measured ~1e-14
    # the same E_J as the mock's own (the DF is a function of it): omega = -Omega_p z_gc
    own = mock.jacobi_energy(torch.tensor(X0[None]), torch.tensor(V0[None])).item() * KMS_TO_KPC_PER_MYR**2
    assert e_j[0] == pytest.approx(own, rel=1e-12)
    # while E and L_z alone change: the bar does act on this orbit
    x, v = orbit.xyz.to_value(u.kpc), orbit.v_xyz.to_value(u.km / u.s)
    lz = x[0] * v[1] - x[1] * v[0]
    assert np.ptp(lz) / abs(lz[0]) > 1e-3


def test_gala_orbit_matches_an_independent_rotating_frame_integration(mock, mock_orbit):
    gpot, orbit = mock_orbit
    x_rot, e_j_ref = _rotating_frame_reference(mock)
    in_pattern = orbit.to_frame(pattern_frame(gpot))
    assert np.abs(in_pattern.xyz.to_value(u.kpc).T - x_rot).max() < 1e-7  # kpc; measured ~1e-11
    e_j = jacobi_energy(gpot, orbit).to_value(u.kpc**2 / u.Myr**2)
    assert np.allclose(e_j, e_j_ref, rtol=1e-10, atol=0)
    # inertial positions: the pattern frame turned back clockwise-from-the-NGP by -Omega_p t
    ang = -mock.omega_p_kms_kpc * KMS_TO_KPC_PER_MYR * TIMES_MYR
    x_in = np.stack([np.cos(ang) * x_rot[:, 0] - np.sin(ang) * x_rot[:, 1],
                     np.sin(ang) * x_rot[:, 0] + np.cos(ang) * x_rot[:, 1], x_rot[:, 2]], -1)
    assert np.abs(orbit.xyz.to_value(u.kpc).T - x_in).max() < 1e-7


def test_a_pattern_turning_the_wrong_way_does_not_conserve_the_mocks_jacobi_energy(mock):
    wrong = to_gala(PatternField(mock.galaxy.phi, -mock.omega_p_kms_kpc))
    orbit = _gala_orbit(wrong)
    e_j_mock = jacobi_energy(to_gala(mock), orbit).to_value(u.kpc**2 / u.Myr**2)  # E_J with omega = -Omega_p z
    assert np.ptp(e_j_mock) / abs(e_j_mock[0]) > 1e-4


def test_the_pattern_turns_clockwise_seen_from_the_north_galactic_pole(mock):
    gpot = to_gala(mock)
    t = 40.0
    ang = -mock.omega_p_kms_kpc * KMS_TO_KPC_PER_MYR * t  # clockwise: azimuth decreases
    x = np.array([[3.0, 1.0, 0.1], [-2.0, 4.0, -0.2]]).T
    turned = np.stack([np.cos(ang) * x[0] - np.sin(ang) * x[1], np.sin(ang) * x[0] + np.cos(ang) * x[1], x[2]])
    now = gpot.energy(x * u.kpc, t=0 * u.Myr)
    later = gpot.energy(turned * u.kpc, t=t * u.Myr)
    assert np.allclose(later.value, now.value, rtol=1e-13)
    assert not np.allclose(gpot.energy(x * u.kpc, t=t * u.Myr).value, now.value, rtol=1e-6)  # the bar moved


def test_any_gala_unit_system_gives_the_same_fields(mock):
    other = to_gala(mock, units=UnitSystem(u.pc, u.yr, u.Msun, u.radian))
    gpot = to_gala(mock)
    x = np.array([[-8.0, 0.4, 0.1], [-7.5, -0.3, -0.2]]).T * u.kpc
    t = 55.0 * u.Myr
    for f in ("energy", "acceleration", "density", "hessian"):
        a, b = getattr(gpot, f)(x, t=t), getattr(other, f)(x.to(u.pc), t=t.to(u.yr))
        assert np.allclose(a.value, b.to_value(a.unit), rtol=1e-12, atol=0), f


# --- the fitted potential -------------------------------------------------------------------------

def _member(seed: int, omega: float, sun: SunFrame | None = None) -> PotentialMember:
    """A potential member with a random (untrained) network: enough to compare two evaluations."""
    torch.manual_seed(seed)
    net = PotentialNet([16, 16], length_scale_kpc=1.0, phi_scale_kms2=1e4)
    with torch.no_grad():
        net.linear.copy_(torch.randn(3))
        net.quadratic.copy_(torch.randn(6))
    return PotentialMember(f"potential_seed-{seed:03d}", net.eval(), omega, {}, sun or SunFrame(), 0.9)


@pytest.fixture(scope="module")
def fitted():
    return Potential([_member(1, 27.5)])


def _helio_points(n=40, r=0.8, seed=3):
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1)[:, None] * r * rng.uniform(0, 1, (n, 1)) ** (1 / 3)


def test_fitted_gala_fields_equal_the_api(fitted):
    gpot = to_gala(fitted)
    x_h = _helio_points()
    x_gc = helio_positions_to_galcen(torch.from_numpy(x_h), fitted.sun).numpy()
    acc_gc = gpot.acceleration(x_gc.T * u.kpc).to_value(u.km / u.s / u.Myr).T
    want = helio_vectors_to_galcen(torch.from_numpy(fitted.acceleration(x_h).value), fitted.sun).numpy()
    # the API evaluates the float32 network (and rounds km/s/Myr to 1.02271e-3): float32 precision
    assert np.abs(acc_gc - want).max() < 1e-5 * np.abs(want).max()
    rho = gpot.density(x_gc.T * u.kpc).to_value(u.Msun / u.pc**3)
    want_rho = fitted.density(x_h).value
    assert np.abs(rho - want_rho).max() < 1e-5 * np.abs(want_rho).max()
    # Phi(Sun) = 0 now, and differences of Phi are the API's
    phi = gpot.energy(x_gc.T * u.kpc).to_value((u.km / u.s) ** 2)
    sun_gc = helio_positions_to_galcen(torch.zeros(1, 3, dtype=torch.float64), fitted.sun).numpy().T
    assert abs(gpot.energy(sun_gc * u.kpc).to_value((u.km / u.s) ** 2)[0]) < 1e-9
    api = fitted.phi(x_h).value - fitted.phi(np.zeros((1, 3))).value
    assert np.abs(phi - api).max() < 1e-5 * np.abs(api).max()


def test_fitted_gala_hessian_is_the_derivative_of_the_gradient(fitted):
    gpot = to_gala(fitted)
    x = helio_positions_to_galcen(torch.from_numpy(_helio_points(5)), fitted.sun).numpy().T  # (3, N)
    hess = gpot.hessian(x * u.kpc).to_value(1 / u.Myr**2)  # (3, 3, N)
    h = 1e-4
    for j in range(3):
        dx = np.zeros((3, 1))
        dx[j] = h
        fd = (gpot.gradient((x + dx) * u.kpc) - gpot.gradient((x - dx) * u.kpc)).to_value(u.kpc / u.Myr**2) / (2 * h)
        assert np.abs(hess[:, j] - fd).max() < 1e-6 * np.abs(hess).max()
    assert np.allclose(hess, np.swapaxes(hess, 0, 1), rtol=0, atol=1e-12 * np.abs(hess).max())


def test_ensemble_is_the_member_mean_and_needs_one_sun():
    a, b = _member(1, 27.0), _member(2, 29.0)
    both = to_gala(Potential([a, b]))
    x = helio_positions_to_galcen(torch.from_numpy(_helio_points(6)), a.sun).numpy().T
    mean = (to_gala(Potential([a])).gradient(x * u.kpc) + to_gala(Potential([b])).gradient(x * u.kpc)) / 2
    assert np.allclose(both.gradient(x * u.kpc).value, mean.value, rtol=1e-12, atol=0)
    assert both.field.omega_p_kms_kpc == 28.0
    assert to_gala(Potential([a, b]), member="potential_seed-002").field.omega_p_kms_kpc == 29.0
    drawn = _member(3, 28.0, SunFrame(r0_kpc=8.3))
    with pytest.raises(ValueError, match="different Suns"):
        to_gala(Potential([a, drawn]))


def test_points_outside_the_fitted_volume_warn_once_with_their_number(fitted):
    gpot = to_gala(fitted)
    x_h = np.array([[0.1, 0.0, 0.0], [1.5, 0.0, 0.0], [0.0, -2.0, 0.3]])
    x_gc = helio_positions_to_galcen(torch.from_numpy(x_h), fitted.sun).numpy().T
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        gpot.energy(x_gc[:, :1] * u.kpc)
        assert not got
        gpot.energy(x_gc * u.kpc)
        gpot.gradient(x_gc * u.kpc)
    assert len(got) == 1 and issubclass(got[0].category, OutsideFitWarning)
    assert "2 of 3 points" in str(got[0].message) and "0.9 kpc" in str(got[0].message)


# --- galpy -----------------------------------------------------------------------------------------

def test_galpy_frame_is_astropys_with_x_reversed():
    sun = SunFrame()
    rep = coord.CartesianRepresentation([[1.0, -0.5], [0.3, 0.2], [0.2, -0.1]] * u.kpc,
                                        differentials=coord.CartesianDifferential([[10.0, -5], [3, 20], [5, 1]] * u.km / u.s))
    c = coord.SkyCoord(coord.Galactic(rep)).transform_to(coord.ICRS)
    c = coord.SkyCoord(c, galcen_distance=sun.r0_kpc * u.kpc, z_sun=sun.z_sun_kpc * u.kpc,
                       galcen_v_sun=coord.CartesianDifferential(list(sun.v_sun_kms) * u.km / u.s))
    gc = c.transform_to(sun.astropy_frame())
    ro = galpy_ro_kpc(PatternField(lambda x: x[:, 0], 0.0, sun))
    o = galpy_orbit.Orbit(c, ro=ro, zo=sun.z_sun_kpc, vo=220.0)
    want_x = galcen_to_galpy(gc.cartesian.xyz.to_value(u.kpc).T)
    want_v = galcen_to_galpy(gc.velocity.d_xyz.to_value(u.km / u.s).T)
    assert np.allclose(np.stack([o.x(), o.y(), o.z()], -1), want_x, rtol=0, atol=1e-9)
    assert np.allclose(np.stack([o.vx(), o.vy(), o.vz()], -1), want_v, rtol=0, atol=1e-7)
    assert np.all(np.stack([o.x(), o.vy()]) > 0)  # Sun-side x > 0 and rotation anticlockwise: L_z > 0


def _galpy_acceleration_kms_myr(ppot, x_gc, t_myr):
    """galpy's force at Galactocentric x (N, 3) kpc, time Myr, mapped back to astropy axes, km/s/Myr."""
    ro, vo = get_physical(ppot)["ro"], get_physical(ppot)["vo"]
    xg = galcen_to_galpy(x_gc)
    R, phi = np.hypot(xg[:, 0], xg[:, 1]), np.arctan2(xg[:, 1], xg[:, 0])
    args = dict(phi=phi, t=t_myr / galpy_time_myr(1.0, ro, vo), use_physical=False)
    fr = galpy_potential.evaluateRforces(ppot, R / ro, xg[:, 2] / ro, **args)
    fz = galpy_potential.evaluatezforces(ppot, R / ro, xg[:, 2] / ro, **args)
    fp = galpy_potential.evaluatephitorques(ppot, R / ro, xg[:, 2] / ro, **args) / (R / ro)
    f = np.stack([fr * np.cos(phi) - fp * np.sin(phi), fr * np.sin(phi) + fp * np.cos(phi), fz], -1)
    return galcen_to_galpy(f) * vo**2 / ro * KMS_TO_KPC_PER_MYR


@pytest.mark.parametrize("which", ["mock", "fitted"])
def test_galpy_forces_equal_galas(which, mock, fitted):
    pot = mock if which == "mock" else fitted
    gpot, ppot = to_gala(pot), to_galpy(pot)
    sun = mock.sun if which == "mock" else fitted.sun
    x_gc = helio_positions_to_galcen(torch.from_numpy(_helio_points(8, 0.7)), sun).numpy()
    for t in (0.0, 37.0):
        ang = -gpot.field.omega_p_per_myr * t  # follow the pattern, so the points stay in the fitted volume
        x_t = np.stack([np.cos(ang) * x_gc[:, 0] - np.sin(ang) * x_gc[:, 1],
                        np.sin(ang) * x_gc[:, 0] + np.cos(ang) * x_gc[:, 1], x_gc[:, 2]], -1)
        want = gpot.acceleration(x_t.T * u.kpc, t=t * u.Myr).to_value(u.km / u.s / u.Myr).T
        got = _galpy_acceleration_kms_myr(ppot, x_t, t)
        assert np.abs(got - want).max() < 1e-10 * np.abs(want).max()  # measured ~1e-15
    xg = galcen_to_galpy(x_gc)
    ro = get_physical(ppot)["ro"]
    rho = galpy_potential.evaluateDensities(ppot, np.hypot(xg[:, 0], xg[:, 1]) / ro, xg[:, 2] / ro,
                                            phi=np.arctan2(xg[:, 1], xg[:, 0]), use_physical=True)
    assert np.allclose(rho, gpot.density(x_gc.T * u.kpc).to_value(u.Msun / u.pc**3), rtol=1e-4)  # galpy's G


def test_galpy_second_derivatives_are_derivatives_of_its_forces(mock):
    base = to_galpy(mock, static=True)
    R, z, phi, h = 1.02, 0.03, 2.9, 1e-5
    f = dict(R=lambda r, zz, p: base._Rforce(r, zz, p), z=lambda r, zz, p: base._zforce(r, zz, p),
             p=lambda r, zz, p: base._phitorque(r, zz, p))
    checks = [(base._R2deriv, f["R"], 0), (base._z2deriv, f["z"], 1), (base._Rzderiv, f["R"], 1),
              (base._phi2deriv, f["p"], 2), (base._Rphideriv, f["p"], 0), (base._phizderiv, f["z"], 2)]
    for second, force, wrt in checks:
        step = np.eye(3)[wrt] * h
        fd = -(force(R + step[0], z + step[1], phi + step[2]) - force(R - step[0], z - step[1], phi - step[2])) / (2 * h)
        assert second(R, z, phi) == pytest.approx(float(fd), rel=1e-6, abs=1e-9)


def test_galpy_orbit_in_the_turning_mock_matches_gala(mock, mock_orbit):
    _, orbit = mock_orbit
    ppot = to_galpy(mock)
    ro, vo = get_physical(ppot)["ro"], get_physical(ppot)["vo"]
    xg, vg = galcen_to_galpy(X0), galcen_to_galpy(V0)
    R, phi = np.hypot(xg[0], xg[1]), np.arctan2(xg[1], xg[0])
    vR, vT = (xg[0] * vg[0] + xg[1] * vg[1]) / R, (xg[0] * vg[1] - xg[1] * vg[0]) / R
    o = galpy_orbit.Orbit([R / ro, vR / vo, vT / vo, xg[2] / ro, vg[2] / vo, phi], ro=ro, vo=vo)
    ts = TIMES_MYR / galpy_time_myr(1.0, ro, vo)
    o.integrate(ts, ppot, method="dop853")
    x = np.stack([o.x(ts), o.y(ts), o.z(ts)], -1)
    assert np.abs(galcen_to_galpy(x) - orbit.xyz.to_value(u.kpc).T).max() < 1e-7  # kpc; measured ~1e-11
    e_j = o.Jacobi(ts, pot=ppot, use_physical=False)  # galpy takes Omega_p from the wrapper
    assert np.ptp(e_j) / abs(e_j[0]) < 1e-8


# --- packaging ------------------------------------------------------------------------------------

def test_missing_library_says_which_extra_to_install():
    with pytest.raises(MissingDependencyError, match=r"pip install 'dpot-hpc\[gala\]'"):
        require("gala_is_not_this_module", "gala")


def test_importing_interop_does_not_import_gala_or_galpy():
    code = "import sys, dpot_hpc.interop; print(any(m.split('.')[0] in ('gala', 'galpy') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
