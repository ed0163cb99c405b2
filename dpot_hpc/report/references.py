"""Published values shown as reference marks for real data on the scalars figure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    """A published value of one scalar (units as ``physics.scalars.SCALARS``) with its 1-sigma error."""

    label: str
    quantity: str
    value: float
    error: float


#: Kalda & Green (2025), "Deep Potential: Recovering the gravitational potential and local pattern
#: speed in the solar neighborhood with GDR3 using normalizing flows", arXiv:2507.03742 (abstract):
#: Omega_p = 28.2 +- 0.1 km/s/kpc, rho = 0.086 +- 0.010 Msun/pc^3, rho_DM = 0.007 +- 0.011 Msun/pc^3.
KALDA_GREEN_2025 = "Kalda & Green 2025"
PUBLISHED = (
    Reference(KALDA_GREEN_2025, "omega_p", 28.2, 0.1),
    Reference(KALDA_GREEN_2025, "rho_R0", 0.086, 0.010),
    Reference(KALDA_GREEN_2025, "rho_dm", 0.007, 0.011),
)
