"""Frames agree with astropy's own transform, for default and non-default Sun parameters."""

import astropy.coordinates as coord
import astropy.units as u
import numpy as np
import pytest
import torch

from dpot_hpc.physics.frames import SunFrame, galcen_to_helio, helio_to_galcen


@pytest.mark.parametrize(
    "sun", [SunFrame(), SunFrame(r0_kpc=8.3, z_sun_kpc=0.025, v_sun_kms=(11.1, 232.2, 7.25), roll_deg=3.0)]
)
def test_helio_to_galcen_matches_astropy(sun):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 0.5, (50, 3))
    v = rng.normal(0, 40, (50, 3))
    rep = coord.CartesianRepresentation(x.T * u.kpc, differentials=coord.CartesianDifferential(v.T * u.km / u.s))
    gc = coord.Galactic(rep).transform_to(sun.astropy_frame())
    xg, vg = helio_to_galcen(torch.from_numpy(x), torch.from_numpy(v), sun)
    assert np.allclose(xg.numpy(), gc.cartesian.xyz.to_value(u.kpc).T, rtol=0, atol=1e-11)
    assert np.allclose(vg.numpy(), gc.velocity.d_xyz.to_value(u.km / u.s).T, rtol=0, atol=1e-9)
    xh, vh = galcen_to_helio(xg, vg, sun)
    assert np.allclose(xh.numpy(), x, atol=1e-12) and np.allclose(vh.numpy(), v, atol=1e-10)
