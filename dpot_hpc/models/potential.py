"""The potential model: an MLP Phi(x) over heliocentric positions, with exact derivatives.

Phi(x) = phi_scale * [g.u + u.H.u / 2 + MLP(u)], u = x / length_scale, with a learned gradient g,
a learned symmetric matrix H and an MLP with SiLU activations (infinitely differentiable), in
(km/s)^2 for x in kpc (heliocentric Galactic Cartesian). The explicit linear and quadratic terms
carry the bulk of the local field (the pull towards the centre, the vertical restoring force),
so the network only learns the departures from it, and training converges much faster. The acceleration a = -grad Phi and the
Laplacian (hence the density rho = Laplacian / 4 pi G) are exact (explicit derivative passes, tested equal to autograd), not
finite differences.
"""

from __future__ import annotations

import torch
from torch import nn

from ..constants import LAPLACIAN_TO_RHO_MSUN_PC3
from .layers import linear


class PotentialNet(nn.Module):
    r"""The potential Phi(x) at heliocentric positions x (kpc), in (km/s)^2.

    .. math:: \Phi(x) = \Phi_0 \left[ g \cdot u + \tfrac12 u^\top H u + \mathrm{MLP}(u) \right],
              \quad u = x / L

    with a learned gradient g, a learned symmetric matrix H (6 numbers) and an MLP with SiLU
    activations (infinitely differentiable, so the Laplacian and the density are smooth). The
    explicit linear and quadratic terms carry the bulk of the local field; the MLP learns the rest.
    Derivatives: autograd (``physics.derivatives``) or the one-pass ``fields``.

    Arguments:
        hidden: widths of the MLP's hidden layers.
        length_scale_kpc: L, the scale of the inputs (the analysis radius), kpc.
        phi_scale_kms2: Phi_0, the scale of the output, (km/s)^2.
    """

    def __init__(self, hidden: list[int], length_scale_kpc: float = 1.0, phi_scale_kms2: float = 1e4):
        super().__init__()
        widths = [3, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        layers.append(nn.Linear(widths[-1], 1))
        self.mlp = nn.Sequential(*layers)
        self.linear = nn.Parameter(torch.zeros(3))
        self.quadratic = nn.Parameter(torch.zeros(6))  # upper triangle of H: xx, yy, zz, xy, xz, yz
        self.register_buffer("length_scale", torch.tensor(float(length_scale_kpc)))
        self.register_buffer("phi_scale", torch.tensor(float(phi_scale_kms2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Phi in (km/s)^2 at heliocentric positions x (kpc), shape (N,)."""
        dtype = self.mlp[0].weight.dtype
        u = (x / self.length_scale.to(x)).to(dtype)
        q = self.quadratic
        quad = 0.5 * (q[0] * u[:, 0] ** 2 + q[1] * u[:, 1] ** 2 + q[2] * u[:, 2] ** 2) + (
            q[3] * u[:, 0] * u[:, 1] + q[4] * u[:, 0] * u[:, 2] + q[5] * u[:, 1] * u[:, 2]
        )
        out = self.mlp(u).squeeze(-1) + u @ self.linear + quad
        return (out * self.phi_scale.to(dtype)).to(x.dtype)


def _quadratic_matrix(q: torch.Tensor) -> torch.Tensor:
    """The symmetric 3x3 matrix H from its upper triangle q = (xx, yy, zz, xy, xz, yz)."""
    return torch.stack([torch.stack([q[0], q[3], q[4]]), torch.stack([q[3], q[1], q[5]]),
                        torch.stack([q[4], q[5], q[2]])])


def _silu_derivatives(h: torch.Tensor):
    s = torch.sigmoid(h)
    d1 = s * (1 + h * (1 - s))
    d2 = s * (1 - s) * (2 + h * (1 - 2 * s))
    return h * s, d1, d2


def fields(phi: PotentialNet, x: torch.Tensor, n_laplacian: int | None = None
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Phi, grad Phi, Laplacian Phi) in one forward pass (differentiable w.r.t. the weights).

    Propagates each layer's value h, Jacobian J = d h/d x and Laplacian L = sum_i d^2 h/d x_i^2
    through the network (for h -> s(h): J' = s'(h) J, L' = s'(h) L + s''(h) |J|^2), which is exact
    and several times cheaper than nested autograd. The Laplacian is computed for the first
    ``n_laplacian`` points only (all when None; training needs it only where the negative-density
    penalty is evaluated). Units: (km/s)^2, (km/s)^2/kpc, (km/s)^2/kpc^2.
    """
    dtype = phi.mlp[0].weight.dtype
    scale = phi.length_scale.to(dtype)
    u = (x / phi.length_scale.to(x)).to(dtype)
    n = u.shape[0]
    m = n if n_laplacian is None else min(n_laplacian, n)
    # rows of S: the value h and the three columns of d h/d x, shape (4, N, width); L: (m, width)
    eye = torch.eye(3, dtype=dtype, device=u.device)[:, None, :].expand(3, n, 3)
    S = torch.cat([u[None], eye])
    L = torch.zeros(m, 3, dtype=dtype, device=u.device)
    for layer in phi.mlp:
        if isinstance(layer, nn.Linear):
            S = S @ layer.weight.T
            S = torch.cat([S[:1] + layer.bias, S[1:]])
            L = L @ layer.weight.T
        else:
            h, d1, d2 = _silu_derivatives(S[0])
            L = L * d1[:m] + d2[:m] * (S[1:4, :m] ** 2).sum(0)
            S = torch.cat([h[None], S[1:4] * d1])
    h, J = S[0], S[1:4, :, 0].T
    q = phi.quadratic
    H = _quadratic_matrix(q)
    out = h.squeeze(-1) + u @ phi.linear + 0.5 * ((u @ H) * u).sum(-1)
    grad = J + phi.linear + u @ H
    lap = L.squeeze(-1) + q[0] + q[1] + q[2]
    ps = phi.phi_scale.to(dtype)
    return (out * ps).to(x.dtype), (grad * ps / scale).to(x.dtype), (lap * ps / scale**2).to(x.dtype)


def gradient(phi: PotentialNet, x: torch.Tensor) -> torch.Tensor:
    """grad Phi [(km/s)^2/kpc] at heliocentric positions x (N, 3) kpc, differentiable w.r.t. the weights.

    An explicit reverse pass written as plain tensor operations: the layers forward, keeping each
    SiLU's derivative s'(h), then the output weights back through them (g <- (g s'(h)) W), so the
    gradient costs two passes of N rows where the one-pass ``fields`` carries four (value and three
    Jacobian columns). Training differentiates it once (no graph of a graph, as nested autograd
    builds), and torch.compile can fuse its elementwise work. Exact, tested equal to autograd.
    """
    dtype = phi.mlp[0].weight.dtype
    u = (x / phi.length_scale.to(x)).to(dtype)
    linears = [layer for layer in phi.mlp if isinstance(layer, nn.Linear)]
    a, slopes = u, []
    for layer in linears[:-1]:
        h = linear(a, layer.weight, layer.bias)
        s = torch.sigmoid(h)
        a = h * s
        slopes.append(s * (1 + h * (1 - s)))
    g = linears[-1].weight  # (1, width): d out / d a of the last hidden layer
    for layer, slope in zip(reversed(linears[:-1]), reversed(slopes)):
        g = linear(g * slope, layer.weight.T)
    q = phi.quadratic
    H = _quadratic_matrix(q)
    grad = g + phi.linear + u @ H
    return (grad * phi.phi_scale.to(dtype) / phi.length_scale.to(dtype)).to(x.dtype)


def explicit_gradient_basis(phi: PotentialNet, x: torch.Tensor) -> torch.Tensor:
    """The gradients [(km/s)^2/kpc] of Phi's 9 explicit terms at x (N, 3) kpc, each with its coefficient
    at 1, in x's dtype, shape (9, N, 3): g . u for g = e_x, e_y, e_z, then 1/2 u^T H u for H's entries
    xx, yy, zz, xy, xz, yz (``PotentialNet.quadratic``'s order). grad Phi is the MLP's gradient plus
    sum_k c_k basis_k over ``phi.linear`` and ``phi.quadratic``'s values c."""
    scale = float(phi.phi_scale) / float(phi.length_scale)
    u = x / float(phi.length_scale)
    linear = torch.eye(3, dtype=x.dtype, device=x.device).expand(x.shape[0], 3, 3).transpose(0, 1)
    quadratic = [u @ _quadratic_matrix(torch.eye(6, dtype=x.dtype, device=x.device)[k]) for k in range(6)]
    return torch.cat([linear, torch.stack(quadratic)]) * scale


@torch.no_grad()
def evaluate(phi: nn.Module, x: torch.Tensor, batch: int = 8192) -> dict[str, torch.Tensor]:
    """Phi [(km/s)^2], a = -grad Phi [(km/s)^2/kpc] and rho [Msun/pc^3] at x (N, 3) kpc."""
    out = {"phi": [], "accel": [], "rho": []}
    for i in range(0, x.shape[0], batch):
        p, g, lap = fields(phi, x[i : i + batch])
        out["phi"].append(p)
        out["accel"].append(-g)
        out["rho"].append(lap * LAPLACIAN_TO_RHO_MSUN_PC3)
    return {k: torch.cat(v) for k, v in out.items()}


def acceleration(phi: nn.Module, x: torch.Tensor, batch: int = 16384) -> torch.Tensor:
    """a = -grad Phi [(km/s)^2/kpc] at x (N, 3) kpc by one backward pass: several times cheaper than
    ``evaluate`` where the density is not needed (e.g. at every point of a gradient cache)."""
    out = []
    for i in range(0, x.shape[0], batch):
        xb = x[i : i + batch].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(phi(xb).sum(), xb)
        out.append(-g)
    return torch.cat(out)
