"""dpot-hpc: Deep Potential on HPC systems (Kalda & Green 2025).

Recovers the Milky Way's local gravitational potential, pattern speed, density and accelerations
from the 6-D phase-space distribution of stars near the Sun, with ensemble uncertainties.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_potential"]


def load_potential(path):
    """Load a trained potential (a run folder: the ensemble median; or one member file).

    See ``dpot_hpc.api.Potential``.
    """
    from .api import load_potential as _load

    return _load(path)
