"""The fitted potential in the orbit integrators astronomers use: gala and galpy (optional extras
``dpot-hpc[gala]``, ``dpot-hpc[galpy]``, imported on first use). See docs/interop.md.

    >>> from dpot_hpc.interop import to_gala, pattern_frame
    >>> gpot = to_gala(pot)                      # Phi(x, t) turning at Omega_p, Galactocentric
    >>> orbit = gpot.integrate_orbit(w0, dt=1 * u.Myr, n_steps=500, Integrator="dopri853")
    >>> in_pattern = orbit.to_frame(pattern_frame(gpot))

Modules: ``field`` (the library-independent turning potential), ``gala_potential``,
``galpy_potential``, ``optional`` (the lazy imports).
"""

from .field import OutsideFitWarning, PatternField, fitted_field, mock_field
from .gala_potential import jacobi_energy, pattern_frame, to_gala
from .galpy_potential import galcen_to_galpy, to_galpy
from .optional import MissingDependencyError

__all__ = ["MissingDependencyError", "OutsideFitWarning", "PatternField", "fitted_field", "galcen_to_galpy",
           "jacobi_energy", "mock_field", "pattern_frame", "to_gala", "to_galpy"]
