"""dpot-hpc: Deep Potential on HPC systems (Kalda & Green 2025).

Recovers the Milky Way's local gravitational potential, pattern speed, density and accelerations
from the 6-D phase-space distribution of stars near the Sun, with ensemble uncertainties.
"""

from ._version import __version__
from .api import Potential, load_potential

__all__ = ["Potential", "__version__", "load_potential"]
