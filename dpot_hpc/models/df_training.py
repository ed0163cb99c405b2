"""Training of one DF flow: shuffled validation split, early stopping, cosine learning rate,
and checkpoints that make a killed run resume to the same final weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from ..config import DFSection
from ..physics.cbe import helio_frame_vectors
from ..physics.frames import SunFrame
from ..physics.gaia import NOISY_OBSERVABLES, ObservedErrors
from .device import native_bfloat16
from .flows import Flow, log_prob_through_errors
from .training import Interrupted, LoopHooks, LoopState, Resumable, seeded, set_cosine_lr


#: History columns of a DF member: epoch, mean training loss, validation loss (-<ln p> per star), learning rate.
HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "lr")
#: Antithetic pairs of noise draws per star and step when a flow is fitted through the errors (4 flow
#: evaluations per star). On Gaussian test DFs blurred by 0.3-0.6 of their dispersion, 2 pairs removed
#: 85-100% of the blur's variance, 1 pair (which gives no estimate of the log's bias) 57-76%, 8 all of it.
PAIRS = 2


@dataclass
class DFTrainState(LoopState):
    """LoopState plus the early-stopping record; history rows are [epoch, train loss, val loss, lr]."""

    epoch: int = 0
    best_val: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0


def mean_nll(flow: Flow, z: torch.Tensor, bfloat16: bool = False) -> torch.Tensor:
    """-<ln p> (float32) of standardised stars z under the flow; with ``bfloat16`` its matrix products in
    bfloat16 (torch.autocast on z's device)."""
    mixed = torch.autocast(z.device.type, dtype=torch.bfloat16) if bfloat16 else contextlib.nullcontext()
    with mixed:
        lp = flow.log_prob_standard(z)
    return -lp.float().mean()


def bfloat16_epochs(df: DFSection, device: str | torch.device, deconvolve: bool = False) -> int:
    """How many of the first epochs train with bfloat16 matrix products: ``df.bfloat16_fraction`` of
    ``df.max_epochs`` (rounded down) on a CPU with native bfloat16 (``native_bfloat16``), else 0: 0 on GPUs
    (float32 there until bfloat16 is measured on one) and for a flow fitted through the errors (its
    log-mean-exp over noise draws stays in float32)."""
    if deconvolve or torch.device(device).type != "cpu" or not native_bfloat16(device):
        return 0
    return int(math.floor(df.bfloat16_fraction * df.max_epochs + 1e-9))


def build_flow(df: DFSection, seed: int, r_max_kpc: float, sun: SunFrame | None = None) -> Flow:
    """A fresh flow whose initial weights depend only on the seed; with ``df.rotate_velocities`` it
    turns velocities to the azimuth of the Sun in ``sun``, which is then required."""
    frame = None
    if df.rotate_velocities:
        if sun is None:
            raise ValueError("df.rotate_velocities needs the Sun's frame (build_flow(..., sun=...))")
        frame = helio_frame_vectors(sun, torch.float64, "cpu")
    return seeded(seed, lambda: Flow(df.transforms, list(df.hidden), order_seed=seed, r_max_kpc=r_max_kpc,
                                     components=df.components, sun_frame=frame, populations=df.populations))


def train_flow(stars: torch.Tensor, df: DFSection, seed: int, r_max_kpc: float,
               hooks: LoopHooks = LoopHooks(), sun: SunFrame | None = None,
               errors: ObservedErrors | None = None) -> tuple[Flow, DFTrainState]:
    """Fit a flow to stars (N, 6) float64 physical coordinates (kpc, km/s); ``sun``: the frame whose
    azimuth the velocities are turned to when ``df.rotate_velocities`` (``build_flow``). With
    ``errors``, the stars' noisy observables and quoted errors (``physics.gaia.ObservedErrors``), the
    flow is fitted through the errors (``flows.log_prob_through_errors``, fresh draws per star and
    step, fixed draws for validation): it models the error-free DF.

    ``hooks.checkpoint(payload)`` is called every ``df.checkpoint_every_epochs`` epochs with everything
    needed to continue; pass that payload back as ``hooks.resume`` to continue bit-for-bit. When
    ``hooks.stop()`` turns true, the loop checkpoints at the end of the epoch and raises Interrupted.
    """
    checkpoint, resume, log, device, stop = hooks.checkpoint, hooks.resume, hooks.log, hooks.device, hooks.stop
    n = stars.shape[0]
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    n_val = max(1, int(round(df.validation_fraction * n)))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    flow = build_flow(df, seed, r_max_kpc, sun)
    train_u = flow.to_unbounded(stars[train_idx])[0]
    flow.set_standardisation(train_u.mean(0), train_u.std(0), n)
    flow.to(device)
    n_train = train_idx.shape[0]
    if errors is None:
        z_train = flow.standardise(stars[train_idx].to(device))
        z_val = flow.standardise(stars[val_idx].to(device))
    else:
        e_train, e_val = errors.rows(train_idx).to(device), errors.rows(val_idx).to(device)
        u_val = torch.randn(n_val, PAIRS, len(NOISY_OBSERVABLES), generator=torch.Generator().manual_seed(seed + 2),
                            dtype=torch.float64).to(device)
    opt = torch.optim.AdamW([{"params": list(flow.parameters()), "base_lr": df.learning_rate}],
                            lr=df.learning_rate, weight_decay=df.weight_decay)
    steps_per_epoch = max(1, math.ceil(n_train / df.batch_size))
    total = steps_per_epoch * df.max_epochs
    run = Resumable(flow, opt, torch.Generator().manual_seed(seed + 1), DFTrainState())
    best = {k: v.detach().clone() for k, v in flow.state_dict().items()}
    if resume is not None:
        best = run.restore(resume)["best_model"]
        if log:
            log(f"resumed at epoch {run.state.epoch} (step {run.state.step})")
    state = run.state
    n_bf16 = bfloat16_epochs(df, device, deconvolve=errors is not None)
    if log and n_bf16:
        log("every epoch with bfloat16 matrix products" if n_bf16 >= df.max_epochs
            else f"epochs 1-{n_bf16} with bfloat16 matrix products, the rest in float32")

    def train_loss(idx: torch.Tensor) -> torch.Tensor:
        if errors is None:
            return mean_nll(flow, z_train[idx], bfloat16=state.epoch < n_bf16)
        u = torch.randn(idx.shape[0], PAIRS, len(NOISY_OBSERVABLES), generator=run.rng, dtype=torch.float64).to(device)
        return -log_prob_through_errors(flow, e_train.rows(idx), u).mean()

    def val_loss() -> float:
        with torch.no_grad():
            tot = 0.0
            for i in range(0, n_val, 8192):
                b = slice(i, i + 8192)
                lp = (flow.log_prob_standard(z_val[b]) if errors is None
                      else log_prob_through_errors(flow, e_val.rows(b), u_val[b]))
                tot += -lp.double().sum().item()
            return tot / n_val

    while not state.done:
        order = torch.randperm(n_train, generator=run.rng).to(device)
        run_loss = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * df.batch_size : (b + 1) * df.batch_size]
            lr = set_cosine_lr(opt, state.step, total)
            loss = train_loss(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), df.clip_grad_norm)
            opt.step()
            state.step += 1
            run_loss += loss.item()
        state.epoch += 1
        hooks.between()
        vl = val_loss()
        state.history.append([state.epoch, run_loss / steps_per_epoch, vl, lr])
        if vl < state.best_val:
            state.best_val, state.best_epoch, state.bad_epochs = vl, state.epoch, 0
            best = {k: v.detach().clone() for k, v in flow.state_dict().items()}
        else:
            state.bad_epochs += 1
        if log:
            log(f"epoch {state.epoch}/{df.max_epochs} train {run_loss / steps_per_epoch:.4f} val {vl:.4f} lr {lr:.2e}")
        if state.bad_epochs >= df.patience or state.epoch >= df.max_epochs:
            state.done = True
            if log:
                why = "early stop" if state.bad_epochs >= df.patience else "max epochs"
                log(f"{why}: best val {state.best_val:.4f} at epoch {state.best_epoch}")
        stopping = not state.done and stop()
        if checkpoint is not None and (state.done or stopping or state.epoch % df.checkpoint_every_epochs == 0):
            checkpoint(run.payload(best_model=best))
        if stopping:
            raise Interrupted(f"stopped at epoch {state.epoch} on request; checkpoint written")
    flow.load_state_dict(best)
    return flow.cpu(), state
