"""Training of one potential member: Phi(x) and Omega_p from the CBE residual over a gradient cache.

Loss (docs/method.md): L = ln < asinh(alpha |r|)/alpha + lambda asinh(beta max(-Lap Phi, 0))/beta >,
r the CBE residual in the frame rotating at Omega_p (km/s/kpc), weighted per point by
``residual_weights`` (``potential.weighting``), the Laplacian exact. The
negative-density term is evaluated at the first ``penalty_points`` cache points of every batch
(all of them when penalty_points >= batch_size). Where the Laplacian is needed at half the points
or more, gradient and Laplacian come from the one-pass propagation ``potential.fields``; with fewer
penalty points the gradient comes from the explicit reverse pass ``potential.gradient`` and the
Laplacian from ``fields`` at the penalty points only (measured in training, docs/benchmarks.md).
Checkpoints carry weights, optimizer and RNG state, so a resumed run ends where an
uninterrupted one does.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..config import PotentialSection
from ..constants import LAPLACIAN_TO_RHO_MSUN_PC3
from ..physics.cbe import helio_frame_vectors, residual_in_frame
from ..physics.frames import SunFrame
from ..progress import MemberLog
from .device import one_cpu_thread
from .potential import PotentialNet, explicit_gradient_basis, fields, gradient
from .training import Interrupted, LoopHooks, LoopState, Resumable, seeded, set_cosine_lr

#: History columns of a potential member: step, loss, mean |r| [km/s/kpc], Omega_p [km/s/kpc].
HISTORY_COLUMNS = ("step", "loss", "mean_abs_r", "omega_p")


def build_potential(pot: PotentialSection, seed: int, length_scale_kpc: float) -> PotentialNet:
    """A fresh potential network whose initial weights depend only on the seed."""
    return seeded(seed, lambda: PotentialNet(list(pot.hidden), length_scale_kpc, pot.phi_scale_kms2))


def loss_terms(
    phi: PotentialNet,
    omega_p: torch.Tensor,
    batch: dict[str, torch.Tensor],
    frame: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    pot: PotentialSection,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, |r| per point, Laplacian at the penalty points) for one batch of cache points; ``frame``:
    the Sun's frame as ``physics.cbe.helio_frame_vectors`` in the batch's dtype and device."""
    x = batch["x"]
    n_pen = min(pot.penalty_points, x.shape[0])
    if 2 * n_pen >= x.shape[0]:  # the Laplacian at most points: one-pass propagation is cheaper (benchmarks.md)
        _, grad, lap = fields(phi, x, n_pen)
    else:  # a few penalty points: the reverse pass for the gradient, the Laplacian at those points only
        grad = gradient(phi, x)
        lap = fields(phi, x[:n_pen])[2]
    accel = -grad
    r = residual_in_frame(x, batch["v"], batch["grad_x"], batch["grad_v"], accel, omega_p.to(x), frame)
    if "weight" in batch:
        r = r * batch["weight"]
    a = pot.alpha
    term_r = torch.asinh(a * r.abs()) / a if a > 0 else r.abs()
    neg = torch.relu(-lap)
    b = pot.beta
    term_p = torch.asinh(b * neg) / b if b > 0 else neg
    loss = torch.log(term_r.mean() + pot.lam * term_p.mean() * n_pen / x.shape[0])
    return loss, r.detach().abs(), lap.detach()


def residual_weights(grad_v: torch.Tensor) -> torch.Tensor:
    """Per-point weights m / |grad_v ln f| (m: their median, so the weighted residual keeps the scale of
    the residual and ``alpha`` its meaning): the residual per unit velocity gradient, an acceleration.
    A flow's gradient errors grow with the gradient itself (near a DF's velocity edge ln f falls
    steeply and the flows smooth the fall), and unweighted those points dominate and bias the fit:
    measured on the built-in mocks, docs/recovery.md. |grad_v ln f| is floored at 1e-3 m."""
    norm = torch.linalg.vector_norm(grad_v, dim=-1)
    m = norm.median()
    return m / norm.clamp(min=1e-3 * float(m))


#: Cache points (a seeded random subset) in the least-squares start: 10 unknowns, so the solution's noise
#: from the subset is far below the flows' errors.
START_POINTS = 50_000
#: Least-squares passes of the start: a plain one, then iteratively reweighted towards the loss's asinh(alpha |r|)/alpha.
START_PASSES = 5


def least_squares_start(phi: PotentialNet, omega: torch.Tensor, data: dict[str, torch.Tensor],
                        frame: tuple[torch.Tensor, torch.Tensor, torch.Tensor], pot: PotentialSection,
                        seed: int) -> None:
    """Set Phi's explicit linear and quadratic terms (``phi.linear``, ``phi.quadratic``) and, unless it is
    fixed, Omega_p (``omega``, km/s/kpc) to the values that minimise the loss's residual term with the
    MLP at its initial weights. The CBE residual is linear in these 10 numbers (through the acceleration
    and the rotating frame), so the minimum is a weighted least-squares solution, made robust like the
    loss by iterative reweighting towards its asinh(alpha |r|)/alpha (``START_PASSES`` passes) on
    ``START_POINTS`` cache points. The bulk of the local field (mean force, mean density, pattern speed)
    is then in place at the first step and the training learns only the departures from it; started at
    zero, the fit's budget decided how much of a dense disc's density it reached (docs/recovery.md).
    Computed on one CPU thread: sums over START_POINTS points would otherwise be split by the thread
    count, and a member must come out bit for bit the same whichever rank trains or resumes it."""
    with one_cpu_thread():
        _least_squares_start(phi, omega, data, frame, pot, seed)


@torch.no_grad()
def _least_squares_start(phi: PotentialNet, omega: torch.Tensor, data: dict[str, torch.Tensor],
                         frame: tuple[torch.Tensor, torch.Tensor, torch.Tensor], pot: PotentialSection,
                         seed: int) -> None:
    """The solve of ``least_squares_start`` (on the calling thread)."""
    n = data["x"].shape[0]
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:START_POINTS].to(data["x"].device)
    x, v, gx, gv = (data[k][pick].double() for k in ("x", "v", "grad_x", "grad_v"))
    w = data["weight"][pick].double() if "weight" in data else torch.ones_like(x[:, 0])
    frame = tuple(t.double() for t in frame)
    free = omega.requires_grad
    phi.linear.zero_()
    phi.quadratic.zero_()

    def residual(grad_phi: torch.Tensor, om: float) -> torch.Tensor:
        return residual_in_frame(x, v, gx, gv, -grad_phi, torch.tensor(om, dtype=x.dtype, device=x.device), frame)

    om0 = 0.0 if free else float(omega)
    grad_mlp = gradient(phi, x)  # the explicit terms are zero: the MLP's alone
    r0 = residual(grad_mlp, om0)
    # the residual is linear in the explicit terms' gradients (explicit_gradient_basis): one column each
    columns = [residual(grad_mlp + b, om0) - r0 for b in explicit_gradient_basis(phi, x)]
    if free:
        columns.append(residual(grad_mlp, 1.0) - r0)
    J, r0 = torch.stack(columns, -1) * w[:, None], r0 * w
    scale = J.square().sum(0).sqrt()  # unit columns: the normal equations' condition is that of J squared
    J = J / scale
    robust = torch.ones_like(r0)
    for _ in range(START_PASSES):
        # normal equations by elementwise sums and a 10x10 solve: torch.linalg.lstsq's LAPACK driver does
        # not give the same last bits from one process to the next, and members must be reproducible
        Jr = J * robust[:, None]
        theta = torch.linalg.solve((Jr[:, :, None] * Jr[:, None, :]).sum(0), -(Jr * (r0 * robust)[:, None]).sum(0))
        r = (r0 + (J * theta).sum(-1)).abs()
        # the asinh loss's IRLS weight rho'(r)/r = 1 / (|r| sqrt(1 + (alpha r)^2)), floored near r = 0; rows x sqrt
        robust = (r.clamp(min=max(1e-3 * float(r.median()), 1e-9)) * torch.sqrt(1.0 + (pot.alpha * r) ** 2)) ** -0.5
    theta = theta / scale
    phi.linear.copy_(theta[:3].to(phi.linear))
    phi.quadratic.copy_(theta[3:9].to(phi.quadratic))
    if free:
        omega.fill_(float(theta[9]))


#: Compile the loss when a member's training sees at least this many points (steps x batch_size):
#: compilation costs 10-25 s per process, the compiled step saves ~6 us per point on one CPU core
#: (default potential: 12.6 vs 25.1 ms per step of 2048 points, potential_paths.json), so short trainings
#: (tests, quick looks) run eagerly.
COMPILE_MIN_POINTS = 2_000_000


def loss_function(pot: PotentialSection, log: MemberLog | None = None) -> Callable:
    """``loss_terms``, compiled with torch.compile when the training is long enough to repay the
    compilation (``COMPILE_MIN_POINTS``): it fuses the elementwise work that dominates these small
    matrices. Falls back to eager execution, with a log line, where compilation is unavailable
    (e.g. no C++ compiler)."""
    if pot.steps * pot.batch_size < COMPILE_MIN_POINTS:
        return loss_terms
    compiled = [torch.compile(loss_terms)]

    def loss(*args):
        if compiled:
            try:
                return compiled[0](*args)
            except Exception as exc:  # noqa: BLE001 - any compiler failure: train eagerly instead
                compiled.clear()
                if log:
                    why = " ".join(str(exc).split())[:160]  # one line
                    log(f"torch.compile unavailable ({type(exc).__name__}: {why}); training eagerly")
        return loss_terms(*args)

    return loss


def train_potential(cache: dict[str, torch.Tensor], pot: PotentialSection, sun: SunFrame, seed: int,
                    length_scale_kpc: float, hooks: LoopHooks = LoopHooks()) -> tuple[PotentialNet, float, LoopState]:
    """Fit Phi and Omega_p to cache = {x, v, grad_x, grad_v} (heliocentric, float32 or 64).

    Returns the network, the pattern speed (km/s/kpc) and the training record (history rows as in
    ``HISTORY_COLUMNS``, every ``steps // 20`` steps). Checkpoints, resume, log, device and stop
    request come in ``hooks`` (as for ``train_flow``); when ``hooks.stop()`` turns true the loop
    checkpoints after the current step and raises Interrupted.
    """
    checkpoint, resume, log, device, stop = hooks.checkpoint, hooks.resume, hooks.log, hooks.device, hooks.stop
    data = {k: cache[k].to(device=device, dtype=torch.float32) for k in ("x", "v", "grad_x", "grad_v")}
    if pot.weighting == "grad_v":
        data["weight"] = residual_weights(data["grad_v"])
    n = data["x"].shape[0]
    phi = build_potential(pot, seed, length_scale_kpc).to(device)
    fixed = pot.fixed_omega_kms_kpc
    omega = torch.nn.Parameter(
        torch.tensor(pot.omega_init_kms_kpc if fixed is None else fixed, dtype=torch.float64, device=device),
        requires_grad=fixed is None,
    )
    groups = [{"params": list(phi.parameters()), "lr": pot.learning_rate, "base_lr": pot.learning_rate}]
    if fixed is None:
        groups.append({"params": [omega], "lr": pot.omega_learning_rate, "base_lr": pot.omega_learning_rate})
    opt = torch.optim.Adam(groups)
    run = Resumable(phi, opt, torch.Generator().manual_seed(seed), LoopState())
    if resume is not None:
        with torch.no_grad():
            omega.fill_(float(run.restore(resume)["omega_p"]))
        if log:
            log(f"resumed at step {run.state.step}")
    state = run.state
    frame = helio_frame_vectors(sun, torch.float32, device)
    if resume is None and pot.least_squares_start:
        least_squares_start(phi, omega, data, frame, pot, seed)
        if log:
            log(f"least-squares start: Omega_p {omega.item():.3f} km/s/kpc, rho from the quadratic term "
                f"{float(phi.quadratic[:3].detach().sum()) * pot.phi_scale_kms2 / length_scale_kpc**2 * LAPLACIAN_TO_RHO_MSUN_PC3:.4f} Msun/pc^3")
    report = max(1, pot.steps // 20)
    loss_fn = loss_function(pot, log)
    while state.step < pot.steps:
        set_cosine_lr(opt, state.step, pot.steps)
        idx = torch.randint(0, n, (min(pot.batch_size, n),), generator=run.rng).to(device)
        batch = {k: v[idx] for k, v in data.items()}
        loss, r_abs, _ = loss_fn(phi, omega, batch, frame, pot)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state.step += 1
        hooks.between()
        if state.step % report == 0 or state.step == pot.steps:
            state.history.append([state.step, loss.item(), r_abs.mean().item(), omega.item()])
            if log:
                log(f"step {state.step}/{pot.steps} loss {loss.item():.4f} <|r|> {r_abs.mean().item():.3f} "
                    f"Omega_p {omega.item():.3f} km/s/kpc")
        state.done = state.step >= pot.steps
        stopping = not state.done and stop()
        if checkpoint is not None and (state.done or stopping or state.step % pot.checkpoint_every_steps == 0):
            checkpoint(run.payload(omega_p=omega.item()))
        if stopping:
            raise Interrupted(f"stopped at step {state.step} on request; checkpoint written")
    return phi.cpu(), float(omega.item()), state
