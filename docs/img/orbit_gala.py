"""Make docs/img/orbit_gala.png: an orbit integrated with gala in a fitted potential of the built-in
example, seen in the pattern's frame, beside the same orbit in the mock's exact potential.

    python docs/img/orbit_gala.py RUN_OR_MEMBER_FILE [--out docs/img/orbit_gala.png]
"""

import argparse

import astropy.units as u
import gala.dynamics as gd
import matplotlib
import numpy as np
import torch

from dpot_hpc import load_potential
from dpot_hpc.config import load_config
from dpot_hpc.data.mockfile import mock_galaxy
from dpot_hpc.interop import pattern_frame, to_gala
from dpot_hpc.physics.frames import galcen_to_helio

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def orbit_in_pattern_frame(pot, w0, myr: float) -> np.ndarray:
    """Heliocentric-axes positions (N, 3) kpc of the orbit from w0, in the pattern's frame."""
    gpot = to_gala(pot)
    orbit = gpot.integrate_orbit(w0, dt=2 * u.Myr, n_steps=int(myr / 2), Integrator="dopri853",
                                 Integrator_kwargs=dict(atol=1e-10, rtol=1e-10))
    x_gc = orbit.to_frame(pattern_frame(gpot)).xyz.to_value(u.kpc).T
    x_h, _ = galcen_to_helio(torch.from_numpy(x_gc), torch.zeros(len(x_gc), 3, dtype=torch.float64), pot.sun)
    return x_h.numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("potential", help="run folder or potential member file of the built-in example")
    ap.add_argument("--out", default="docs/img/orbit_gala.png")
    ap.add_argument("--myr", type=float, default=200.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    pot = load_potential(args.potential)
    mock = mock_galaxy(load_config(None))
    # a star at the Sun moving (4, -1, 6) km/s relative to the pattern: inwards, slightly behind it, up
    _, x_sun, _ = pot.sun.affine()  # the Sun's Galactocentric position, kpc
    omega = np.array([0.0, 0.0, -pot.omega_p.to_value(u.km / u.s / u.kpc)])  # Galactic sense: -z
    v0 = np.cross(omega, x_sun) + np.array([4.0, -1.0, 6.0])
    w0 = gd.PhaseSpacePosition(pos=x_sun * u.kpc, vel=v0 * u.km / u.s)
    fit = orbit_in_pattern_frame(pot, w0, args.myr)
    true = orbit_in_pattern_frame(mock, w0, args.myr)

    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.6), gridspec_kw=dict(width_ratios=[1, 1.25]))
    r_fit = min(m.fit_radius_kpc or 0.9 for m in pot.members)  # kpc
    ax = axes[0]
    ax.add_patch(plt.Circle((0, 0), r_fit, fill=False, ls=":", color="0.5"))
    ax.plot(true[:, 0], true[:, 1], color="0.6", lw=1.0, label="mock's exact potential")
    ax.plot(fit[:, 0], fit[:, 1], color="C0", lw=1.0, label="fitted potential")
    ax.plot([0], [0], marker="*", color="C1", ms=9, ls="none")
    ax.set(xlabel="x [kpc] (towards the Galactic centre)", ylabel="y [kpc] (Galactic rotation)",
           xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal")
    ax.legend(fontsize=7, loc="lower left", frameon=False)
    ax = axes[1]
    t = np.arange(len(fit)) * 2.0
    ax.plot(t, true[:, 2], color="0.6", lw=1.0, label="z")
    ax.plot(t, fit[:, 2], color="C0", lw=1.0)
    ax.plot(t, np.linalg.norm(true, axis=1), color="0.6", lw=0.8, ls="--", label="distance from the Sun")
    ax.plot(t, np.linalg.norm(fit, axis=1), color="C0", lw=0.8, ls="--")
    ax.axhline(r_fit, ls=":", color="0.5")
    ax.set(xlabel="t [Myr]", ylabel="[kpc]", ylim=(-0.2, 1.12))
    ax.legend(fontsize=7, loc="upper left", ncol=2, frameon=False)
    fig.suptitle(rf"gala orbit in the pattern's frame ($\Omega_p$ = {pot.omega_p.value:.1f} km/s/kpc), "
                 "heliocentric axes; dotted: the fitted volume", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}; max distance from the Sun {np.linalg.norm(fit, axis=1).max():.2f} kpc (fitted), "
          f"{np.linalg.norm(true, axis=1).max():.2f} kpc (exact)")


if __name__ == "__main__":
    main()
