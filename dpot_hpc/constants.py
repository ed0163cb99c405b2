"""Physical constants and unit conversions, in the code units of the project.

Code units: positions in kpc, velocities in km/s, potential in (km/s)^2, time in kpc/(km/s),
pattern speed in km/s/kpc, density in Msun/kpc^3 (reported in Msun/pc^3).
"""

import math

#: Newton's constant in kpc (km/s)^2 / Msun.
G_KPC_KMS2_PER_MSUN = 4.300917e-6

#: One (km/s)^2/kpc (the code unit of acceleration) in km/s/Myr.
ACCEL_KMS2_PER_KPC_TO_KMS_PER_MYR = 1.02271e-3

#: One Msun/kpc^3 in Msun/pc^3.
MSUN_PER_KPC3_TO_MSUN_PER_PC3 = 1e-9

#: One kpc/(km/s) in Myr.
TIME_UNIT_MYR = 977.79

#: Laplacian of Phi [(km/s)^2/kpc^2] -> density [Msun/pc^3].
LAPLACIAN_TO_RHO_MSUN_PC3 = MSUN_PER_KPC3_TO_MSUN_PER_PC3 / (4.0 * math.pi * G_KPC_KMS2_PER_MSUN)

#: km/s per (mas/yr x kpc): a proper motion at a distance as a tangential velocity (1 au/yr in km/s).
KMS_PER_MASYR_KPC = 4.740470463

#: The six phase-space columns of the heliocentric Galactic Cartesian frame, in this order.
PHASE_SPACE_COLUMNS = ("x", "y", "z", "vx", "vy", "vz")
PHASE_SPACE_UNITS = ("kpc", "kpc", "kpc", "km/s", "km/s", "km/s")

#: Astropy v4.0 Galactocentric defaults (Gravity Collab. 2018 R0; Bennett & Bovy 2019 z_sun;
#: Reid & Brunthaler 2004 + Drimmel & Poggio 2018 + Gravity 2018 for v_sun).
R0_KPC = 8.122
Z_SUN_KPC = 0.0208
V_SUN_KMS = (12.9, 245.6, 7.78)

#: Local baryon density of McKee, Parravano & Hollenbach (2015, ApJ 814, 13), Msun/pc^3.
RHO_BARYON_MPH15_MSUN_PC3 = 0.084
