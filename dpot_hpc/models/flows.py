"""Normalizing flows for the distribution function f(x, v).

A masked autoregressive flow (MAF; Papamakarios et al. 2017) whose transforms are smooth and
monotone per coordinate: an affine map followed by a sum of tanh steps,

    y = (z_i - mu_i) exp(-s_i),   u_i = y + sum_k a_k tanh((y - c_k) / w_k),   a_k >= 0,

with mu, s, a, c, w functions of the preceding coordinates (MADE conditioners with SiLU). The tanh
steps reshape each conditional (a sharp core with broad wings, as a disc's vertical profile or a
mixture of velocity dispersions has it), which affine transforms alone cannot: an affine MAF
smooths the disc's vertical core (its d ln f/dz near the plane 0.80-0.89 of the truth on the
built-in mocks, docs/recovery.md). Everything is infinitely differentiable (C-infinity), so the
gradients of ln f that the potential consumes are smooth; density evaluation is one pass per
transform; sampling is sequential (6 passes per transform, each inverting the monotone steps by
safeguarded Newton iterations). With no tanh steps (``components = 0``) the transform is the plain affine MAF.
The flow works on standardised coordinates; ``log_prob`` takes physical heliocentric phase-space
coordinates (kpc, km/s) and returns ln f in stars per kpc^3 (km/s)^3 when ``n_stars`` is set.
Optionally (``sun_frame``) the flow sees each star's velocity turned to the Sun's Galactocentric azimuth
(``physics.frames.velocities_at_sun_azimuth``, determinant 1): an axisymmetric DF's small azimuthal
derivative, which the pattern speed rests on, is then one input direction instead of the near-cancelling
difference of d/dy and d/dv.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..physics.frames import velocities_at_sun_azimuth
from ..physics.gaia import ObservedErrors, phase_space
from .layers import linear

D = 6
LOG_SCALE_BOUND = 4.0
#: Bounds of the monotone steps: centres |c| < C_BOUND, widths exp(+-W_LOG_BOUND), in the
#: transform's standardised units; heights a = softplus(raw - A_OFFSET) start near 0 (identity).
C_BOUND, W_LOG_BOUND, A_OFFSET = 3.0, 1.5, 4.0


class MADE(nn.Module):
    r"""Masked autoencoder for distribution estimation (Germain et al. 2015, arXiv:1502.03509).

    An MLP whose weight matrices are masked so that the outputs for coordinate i depend only on the
    coordinates before i in ``order``: per coordinate the shift :math:`\mu_i`, the log-scale
    :math:`s_i` (bounded smoothly by :math:`B \tanh(\tilde s / B)`, B = ``LOG_SCALE_BOUND``) and,
    for each of the K monotone steps, a height :math:`a_{ik} \ge 0`, a centre :math:`c_{ik}` and a
    width :math:`w_{ik}`. SiLU activations keep it infinitely differentiable. The output layer
    starts at zero, so a new transform is (nearly) the identity; the steps' centres start spread
    over [-1.5, 1.5] so that they learn different features.

    Arguments:
        order: a permutation of the D = 6 coordinates (the autoregressive order).
        hidden: the widths of the hidden layers.
        components: K, the number of tanh steps per coordinate (0: affine only).
    """

    def __init__(self, order: torch.Tensor, hidden: list[int], components: int = 0):
        super().__init__()
        self.components = int(components)
        self.register_buffer("order", order.clone())
        deg_in = torch.empty(D, dtype=torch.long)
        deg_in[order] = torch.arange(D)  # position of each input in the autoregressive order
        degs = [deg_in]
        for h in hidden:
            degs.append(torch.arange(h) % (D - 1))
        layers, masks = [], []
        widths = [D, *hidden]
        for i in range(len(hidden)):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            masks.append((degs[i + 1][:, None] >= degs[i][None, :]).float())
        n_out = 2 + 3 * self.components
        out = nn.Linear(widths[-1], n_out * D)
        out_deg = deg_in.repeat(n_out)
        masks.append((out_deg[:, None] > degs[-1][None, :]).float())
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.layers = nn.ModuleList([*layers, out])
        for i, m in enumerate(masks):
            self.register_buffer(f"mask{i}", m)
        k = self.components
        self.register_buffer("centre0", torch.linspace(-1.5, 1.5, k)[:, None] if k > 1 else torch.zeros(k, 1))
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor):
        """(shift, log_scale, heights, centres, widths); the first two (..., D), the others (..., K, D)."""
        h = x
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            h = linear(h, layer.weight * getattr(self, f"mask{i}"), layer.bias)
            if i < n - 1:
                h = self.act(h)
        k = self.components
        h = h.view(*h.shape[:-1], 2 + 3 * k, D)
        shift, log_scale = h[..., 0, :], LOG_SCALE_BOUND * torch.tanh(h[..., 1, :] / LOG_SCALE_BOUND)
        heights = nn.functional.softplus(h[..., 2 : 2 + k, :] - A_OFFSET)
        centres = C_BOUND * torch.tanh((h[..., 2 + k : 2 + 2 * k, :] + self.centre0) / C_BOUND)
        widths = torch.exp(W_LOG_BOUND * torch.tanh(h[..., 2 + 2 * k :, :] / W_LOG_BOUND))
        return shift, log_scale, heights, centres, widths


def monotone_steps(y: torch.Tensor, heights: torch.Tensor, centres: torch.Tensor, widths: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """u = y + sum_k a_k tanh((y - c_k)/w_k) and du/dy (> 0), elementwise; y (..., D), the rest (..., K, D)."""
    t = torch.tanh((y.unsqueeze(-2) - centres) / widths)
    return y + (heights * t).sum(-2), 1.0 + (heights / widths * (1.0 - t * t)).sum(-2)


def invert_monotone_steps(u: torch.Tensor, heights: torch.Tensor, centres: torch.Tensor, widths: torch.Tensor,
                          max_iterations: int = 100) -> torch.Tensor:
    """y with monotone_steps(y) = u: safeguarded Newton (Numerical Recipes' rtsafe). The root lies in
    [u - sum a, u + sum a] (|u - y| <= sum a); each iteration shrinks that bracket to the side the
    residual's sign gives and takes the Newton step where it stays in the bracket and is under half the
    step before last, else bisects. A point is done (and left as it is) once it has taken a Newton step,
    or has a bracket, no larger than the round-off of its terms (4 eps (1 + |y| + sum a); du/dy >= 1,
    so its residual is as small). Quadratic near the root: 10-20 iterations for a batch of points in
    float32 or float64 (the batch stops with its slowest point), where 48 bisections were taken before."""
    total = heights.sum(-2)
    lo, hi = u - total, u + total
    tol = 4 * torch.finfo(u.dtype).eps * (1.0 + u.abs() + 2 * total)
    y, dx = u.clone(), 2 * total
    dx_before, done = dx, torch.zeros_like(u, dtype=torch.bool)
    for _ in range(max_iterations):
        val, slope = monotone_steps(y, heights, centres, widths)
        above = val > u
        hi, lo = torch.where(above, y, hi), torch.where(above, lo, y)
        step = (val - u) / slope
        new, mid = y - step, 0.5 * (lo + hi)
        newton = (new >= lo) & (new <= hi) & (2 * step.abs() <= dx_before.abs())
        dx_before, dx = dx, torch.where(newton, step, y - mid)
        y = torch.where(done, y, torch.where(newton, new, mid))
        done = done | (newton & (step.abs() <= tol)) | (hi - lo <= tol)
        if bool(done.all()):
            break
    return y


def ball_to_space(x: torch.Tensor, r_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Map the selection ball |x| < r_max onto R^3 radially, y = x * r_max atanh(r/r_max) / r.

    Returns (y, ln|det dy/dx|). The map is the identity to first order at the centre and sends
    the sphere's hard edge to infinity, so the flow never has to model a discontinuity.
    """
    r = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    s = (r / r_max).clamp(max=1.0 - 1e-7)
    small = s < 1e-4
    s_safe = torch.where(small, torch.full_like(s, 1e-4), s)
    ratio = torch.where(small, 1.0 + s**2 / 3.0, torch.atanh(s_safe) / s_safe)  # atanh(s)/s
    logdet = -torch.log1p(-(s**2)) + 2.0 * torch.log(ratio)
    return x * ratio, logdet.squeeze(-1)


def space_to_ball(y: torch.Tensor, r_max: float) -> torch.Tensor:
    """Inverse of ball_to_space."""
    rho = torch.linalg.vector_norm(y, dim=-1, keepdim=True) / r_max
    small = rho < 1e-4
    rho_safe = torch.where(small, torch.full_like(rho, 1e-4), rho)
    ratio = torch.where(small, 1.0 - rho**2 / 3.0, torch.tanh(rho_safe) / rho_safe)
    return y * ratio


class Flow(nn.Module):
    """MAF over standardised 6-D phase space, with the standardisation stored as buffers.

    Positions are first mapped from the selection ball (radius r_max_kpc around the Sun) to R^3
    by ``ball_to_space``; the density in physical coordinates includes that map's Jacobian.

    With ``populations`` K > 1 the density is a mixture of K such flows (parts) over the same
    standardisation, p = sum_k w_k p_k, with weights w = softmax(``mixture_logits``) fitted with them:
    each part is free to take one stellar population (a thin and a thick disc), and where one population
    ends inside another's velocity range the sum keeps the end sharp, which a single smooth flow cannot
    (docs/method.md, 'DF: flows'). Part 0 is ``made``; the others are in ``more_parts``.

    Arguments:
        transforms: the number of autoregressive transforms.
        hidden: the hidden widths of each transform's MADE conditioner.
        order_seed: seed of the random coordinate order of each transform.
        r_max_kpc: radius of the selection ball around the Sun, kpc.
        components: tanh steps per coordinate and transform (0: affine MAF).
        sun_frame: (Galactic centre [kpc], Sun's Galactocentric velocity [km/s], Galactic axis) in
            heliocentric axes (``physics.cbe.helio_frame_vectors``, float64): the flow then models the
            velocities turned to the Sun's azimuth; None: the heliocentric velocities as they are.
        populations: K, the number of flows in the mixture (1: a single flow).
    """

    def __init__(self, transforms: int, hidden: list[int], order_seed: int, r_max_kpc: float, components: int = 0,
                 sun_frame: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None, populations: int = 1):
        super().__init__()
        self.register_buffer("r_max_kpc", torch.tensor(float(r_max_kpc), dtype=torch.float64))
        if sun_frame is not None:  # rows: Galactic centre, Sun's velocity, Galactic axis
            self.register_buffer("sun_frame", torch.stack([t.to(torch.float64) for t in sun_frame]))
        g = torch.Generator().manual_seed(int(order_seed))
        orders = [torch.randperm(D, generator=g) for _ in range(transforms)]
        self.made = nn.ModuleList([MADE(o, hidden, components) for o in orders])
        if populations > 1:  # built after part 0, so that part 0 starts as the single flow of this seed would
            self.more_parts = nn.ModuleList()
            for _ in range(populations - 1):
                orders = [torch.randperm(D, generator=g) for _ in range(transforms)]
                self.more_parts.append(nn.ModuleList([MADE(o, hidden, components) for o in orders]))
            self.mixture_logits = nn.Parameter(torch.zeros(populations))
        self.register_buffer("mean", torch.zeros(D, dtype=torch.float64))
        self.register_buffer("std", torch.ones(D, dtype=torch.float64))
        self.register_buffer("log_n_stars", torch.zeros((), dtype=torch.float64))

    def set_standardisation(self, mean: torch.Tensor, std: torch.Tensor, n_stars: int) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std)
        self.log_n_stars.fill_(math.log(n_stars))

    @property
    def parts(self) -> list[nn.ModuleList]:
        """Each part's transforms (one list for a single flow)."""
        return [self.made, *getattr(self, "more_parts", [])]

    def log_weights(self) -> torch.Tensor:
        """ln w_k of the mixture's parts, (K,) (0 for a single flow)."""
        if not hasattr(self, "mixture_logits"):
            return torch.zeros(1, dtype=self.mean.dtype, device=self.mean.device)
        return torch.log_softmax(self.mixture_logits, 0)

    def to_base(self, z: torch.Tensor, part: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised points -> base (standard normal) points of one part and ln|det| of its map."""
        logdet = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for made in self.parts[part]:
            shift, log_scale, heights, centres, widths = made(z)
            z = (z - shift) * torch.exp(-log_scale)
            logdet = logdet - log_scale.sum(-1)
            if made.components:
                z, slope = monotone_steps(z, heights, centres, widths)
                logdet = logdet + torch.log(slope).sum(-1)
        return z, logdet

    def from_base(self, u: torch.Tensor, part: int = 0) -> torch.Tensor:
        """Inverse of to_base (sequential: D passes per transform, pass d fixing the coordinate that is
        d-th in the transform's order, whose conditioner then sees only fixed coordinates)."""
        with torch.no_grad():
            for made in reversed(self.parts[part]):
                x = torch.zeros_like(u)
                for j in made.order.tolist():
                    shift, log_scale, heights, centres, widths = made(x)
                    c = slice(j, j + 1)
                    y = u[..., c]
                    if made.components:
                        y = invert_monotone_steps(y, heights[..., c], centres[..., c], widths[..., c])
                    x[..., c] = y * torch.exp(log_scale[..., c]) + shift[..., c]
                u = x
        return u

    def log_prob_standard(self, z: torch.Tensor) -> torch.Tensor:
        """ln p of standardised points (the training objective), shape (N,)."""
        def part_log_prob(k: int) -> torch.Tensor:
            u, logdet = self.to_base(z, k)
            return -0.5 * (u**2).sum(-1) - 0.5 * D * math.log(2 * math.pi) + logdet

        if len(self.parts) == 1:
            return part_log_prob(0)
        lw = self.log_weights()
        return torch.logsumexp(torch.stack([lw[k] + part_log_prob(k) for k in range(len(self.parts))]), 0)

    @property
    def rotates_velocities(self) -> bool:
        return hasattr(self, "sun_frame")

    def _turned(self, x: torch.Tensor, v: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        """v turned to the Sun's azimuth (or back), when the flow does that; else v."""
        if not self.rotates_velocities:
            return v
        frame = self.sun_frame.to(v)
        return velocities_at_sun_azimuth(x, v, (frame[0], frame[1], frame[2]), inverse=inverse)

    def to_unbounded(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Physical (x, v) -> (y, v') with the ball mapped to R^3 (and v turned to the Sun's azimuth when
        the flow has a ``sun_frame``), and ln|det| of that map (the turn's is 0)."""
        y, logdet = ball_to_space(w[..., :3], float(self.r_max_kpc))
        return torch.cat([y, self._turned(w[..., :3], w[..., 3:])], -1), logdet

    def _standardised(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Physical points -> (standardised unbounded coordinates, ln|det| of the ball map)."""
        u, logdet = self.to_unbounded(w)
        return ((u - self.mean.to(w)) / self.std.to(w)).to(self.made[0].layers[0].weight.dtype), logdet

    def standardise(self, w: torch.Tensor) -> torch.Tensor:
        """Physical points -> the flow's standardised unbounded coordinates."""
        return self._standardised(w)[0]

    def log_prob(self, w: torch.Tensor) -> torch.Tensor:
        """ln f at physical phase-space points w = (x, y, z [kpc], vx, vy, vz [km/s]), (N,)."""
        z, logdet = self._standardised(w)
        lp = self.log_prob_standard(z).to(w.dtype) - torch.log(self.std).sum().to(w)
        return lp + logdet + self.log_n_stars.to(w)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Draw n physical phase-space points (float64)."""
        dtype = self.made[0].layers[0].weight.dtype
        device = self.mean.device
        u = torch.randn(n, D, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
        if len(self.parts) == 1:
            u = self.from_base(u)
        else:  # each point's part drawn with the mixture's weights
            which = torch.multinomial(self.log_weights().exp().detach().double().cpu(), n, replacement=True,
                                      generator=generator).to(device)
            for k in range(len(self.parts)):
                mine = which == k
                u[mine] = self.from_base(u[mine], k)
        u = u.to(torch.float64) * self.std + self.mean
        x = space_to_ball(u[..., :3], float(self.r_max_kpc))
        return torch.cat([x, self._turned(x, u[..., 3:], inverse=True)], -1)


def log_prob_through_errors(flow: Flow, errors: ObservedErrors, u: torch.Tensor) -> torch.Tensor:
    """ln of the density of the stars' observed observables when the flow's f is their error-free DF
    (N,), up to a constant per star, so that a flow trained on it deconvolves the errors.

    With Gaussian errors in (parallax, pmra, pmdec, radial_velocity) (``errors``, from
    ``physics.gaia.observed_errors``), the density at the observed values is the mean, over draws of
    the true values theta' = theta + sigma u (u ~ N(0, I_4)), of f at their exact phase-space point
    times the Jacobian |d(x, v)/d(theta)| = 4.74^2 parallax'^-6 (the angles fixed). It is estimated
    from P antithetic pairs theta +- sigma u_p (``u`` (N, P, 4)), whose odd terms cancel. The ln of a
    mean of draws is biased low (Jensen), which leaves part of the blur in the fitted f; with P >= 2
    the bias's leading term, Var(pair means) / (2 P mean^2), is estimated from the pairs and added
    (the delta method). A draw whose parallax puts it beyond the selection sphere (or behind the Sun)
    stays at the observed values: the kernel so truncated is still symmetric in the observables, so the
    density it implies for the selected stars keeps its normalisation."""
    n, p = u.shape[0], u.shape[1]
    basis, theta, sigma = errors.basis, errors.theta, errors.sigma
    du = sigma[:, None] * u.to(theta)  # (N, P, 4)
    draws = torch.cat([theta[:, None] + du, theta[:, None] - du], 1)  # (N, 2P, 4)
    kept = draws[..., 0] > 1.0 / float(flow.r_max_kpc)
    draws = torch.where(kept[..., None], draws, theta[:, None])
    w = phase_space(basis[:, None].expand(n, 2 * p, 3, 3), draws).reshape(-1, 6)
    z, logdet = flow._standardised(w)
    jac = -6.0 * torch.log(draws[..., 0] / theta[:, None, 0])
    lp = (flow.log_prob_standard(z) + logdet.to(z.dtype)).view(n, 2 * p) + jac.to(z.dtype)
    blurred = torch.logsumexp(lp, 1) - math.log(2.0 * p)
    if p > 1:
        pair = torch.exp(lp.view(n, 2, p) - blurred[:, None, None]).mean(1)  # pair means / overall mean
        blurred = blurred + pair.var(1) / (2 * p)
    return blurred


def log_prob_and_gradients(flow: Flow, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ln f, d ln f / d w) at physical points w (N, 6); gradients in 1/kpc and s/km."""
    w = w.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        lp = flow.log_prob(w)
        (g,) = torch.autograd.grad(lp.sum(), w)
    return lp.detach(), g
