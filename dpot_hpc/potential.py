"""The potential model: an MLP Phi(x) over heliocentric positions, with exact derivatives.

Phi(x) = phi_scale * MLP(x / length_scale), SiLU activations (infinitely differentiable), in
(km/s)^2 for x in kpc (heliocentric Galactic Cartesian). The acceleration a = -grad Phi and the
Laplacian (hence the density rho = Laplacian / 4 pi G) come from autograd, not finite differences.
"""

from __future__ import annotations

import torch
from torch import nn

from .constants import LAPLACIAN_TO_RHO_MSUN_PC3


class PotentialNet(nn.Module):
    def __init__(self, hidden: list[int], length_scale_kpc: float = 1.0, phi_scale_kms2: float = 1e4):
        super().__init__()
        widths = [3, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        layers.append(nn.Linear(widths[-1], 1))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("length_scale", torch.tensor(float(length_scale_kpc)))
        self.register_buffer("phi_scale", torch.tensor(float(phi_scale_kms2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Phi in (km/s)^2 at heliocentric positions x (kpc), shape (N,)."""
        dtype = self.mlp[0].weight.dtype
        out = self.mlp((x / self.length_scale.to(x)).to(dtype)).squeeze(-1)
        return (out * self.phi_scale.to(dtype)).to(x.dtype)


def gradient(phi: nn.Module, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """grad Phi ((km/s)^2/kpc) at x (N, 3); differentiable when create_graph."""
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(phi(x).sum(), x, create_graph=create_graph)
    return g


def gradient_and_laplacian(phi: nn.Module, x: torch.Tensor, create_graph: bool = False):
    """(grad Phi, Laplacian Phi) at x; the Laplacian is the exact trace of the Hessian."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(phi(x).sum(), x, create_graph=True)
        lap = torch.zeros(x.shape[0], dtype=g.dtype, device=g.device)
        for i in range(3):
            (h,) = torch.autograd.grad(g[:, i].sum(), x, create_graph=create_graph, retain_graph=True)
            lap = lap + h[:, i]
    if not create_graph:
        g, lap = g.detach(), lap.detach()
    return g, lap


@torch.no_grad()
def evaluate(phi: nn.Module, x: torch.Tensor, batch: int = 8192) -> dict[str, torch.Tensor]:
    """Phi [(km/s)^2], a = -grad Phi [(km/s)^2/kpc] and rho [Msun/pc^3] at x (N, 3) kpc."""
    out = {"phi": [], "accel": [], "rho": []}
    for i in range(0, x.shape[0], batch):
        xb = x[i : i + batch]
        g, lap = gradient_and_laplacian(phi, xb)
        out["phi"].append(phi(xb).detach())
        out["accel"].append(-g)
        out["rho"].append(lap * LAPLACIAN_TO_RHO_MSUN_PC3)
    return {k: torch.cat(v) for k, v in out.items()}
