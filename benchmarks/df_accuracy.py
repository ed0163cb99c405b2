"""Benchmark: accuracy of the DF flows' gradients of ln f, per unit of CPU time, on the built-in mock.

The potential sees only grad ln f, so a DF model is judged by how well its gradients match the
mock's exact ones (``mock.log_df_gradients``) at held-out true stars, and by what it costs.

Training set: the default mock's stars, ``sample(mock_galaxy(load_config(None)), N, seed=1)``
(N = 200,000 unless the candidate says otherwise). Evaluation set: 20,000 true stars with
|x| < 0.9 kpc from a separate draw (seed 12345).

Metrics per trained flow (``metrics``):
  gx_err, gv_err   median over points of |g_fit - g_true| / |g_true| for grad_x ln f, grad_v ln f
  gx_err_p90, ...  the same at the 90th percentile
  slope_z          least-squares slope through the origin of fitted vs true d ln f/dz, |z| < 0.2 kpc
  slope_z_all      the same over all points
  lnf_fit          held-out mean ln f per star (ln stars kpc^-3 (km/s)^-3, N = training stars)
  lnf_gap          mean(ln f_true - ln f_fit) over the held-out stars (nats/star; ~ KL, >= 0 ideally)
  cbe_rel          median |CBE residual| with the TRUE potential and Omega_p, fitted gradients,
                   over median |v . grad_x ln f_true| (0 for exact gradients)
Costs: training wall (perf_counter) and CPU (process_time) seconds, peak RSS (whole process),
time for ln f + 6 gradients at the 20,000 evaluation points, and time to sample 20,000 points.
Ensembles (``ensemble``): the per-component median and the mean over K seeded flows' gradients.

One candidate per process (peak RSS is per process), one torch thread:

    python benchmarks/df_accuracy.py train maf_default --seed 0
    python benchmarks/df_accuracy.py ensemble maf_default --seeds 0 1 2
    python benchmarks/df_accuracy.py e2e maf_default --seeds 0 1 2   # potential on their cache
    python benchmarks/df_accuracy.py table    # markdown table (also below "## Table" in the notes)

Results accumulate in benchmarks/results/df_accuracy.json (notes and table:
benchmarks/results/df_accuracy_exploration.md); models and per-point gradients go to
benchmarks/out/df_accuracy/ (not committed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from dpot_hpc.config import load_config  # noqa: E402
from dpot_hpc.models.flows import Flow, ball_to_space, space_to_ball  # noqa: E402
from dpot_hpc.physics.mock import log_df_gradients, sample, truth_fields  # noqa: E402
from dpot_hpc.data.mockfile import mock_galaxy  # noqa: E402

OUT = HERE / "out" / "df_accuracy"
RESULTS = HERE / "results" / "df_accuracy.json"
TABLE = HERE / "results" / "df_accuracy_exploration.md"
N_EVAL = 20_000
EVAL_SEED = 12345
EVAL_R_MAX = 0.9
NEAR_PLANE_Z = 0.2
D = 6


# ----------------------------------------------------------------------------------------------
# Candidates
# ----------------------------------------------------------------------------------------------
@dataclass
class Train:
    """Optimisation settings (fit_df.train_flow's, plus the knobs explored here)."""

    batch_size: int = 2048
    learning_rate: float = 1e-3
    max_epochs: int = 25
    patience: int = 6
    weight_decay: float = 0.0
    clip_grad_norm: float = 1.0
    validation_fraction: float = 0.1
    warmup_epochs: float = 0.0  # linear warm-up before the cosine decay
    final_lr_fraction: float = 0.0  # cosine decays to this fraction of the peak
    float64: bool = False
    n_stars: int = 200_000


@dataclass
class Candidate:
    family: str  # "maf" (ours), "zuko_maf", "zuko_nsf", "zuko_naf", "zuko_unaf"
    arch: dict = field(default_factory=dict)
    train: Train = field(default_factory=Train)
    note: str = ""


CANDIDATES: dict[str, Candidate] = {
    # (a) baseline: the project's defaults (config.yaml df section)
    "maf_default": Candidate("maf", {"transforms": 6, "hidden": [128, 128]}, Train(),
                             "project default"),
    # (b) longer training
    "maf_e50": Candidate("maf", {"transforms": 6, "hidden": [128, 128]}, Train(max_epochs=50, patience=12)),
    "maf_e100": Candidate("maf", {"transforms": 6, "hidden": [128, 128]}, Train(max_epochs=100, patience=100)),
    # (d) big batch, larger learning rate (speed)
    "maf_b8192": Candidate("maf", {"transforms": 6, "hidden": [128, 128]},
                           Train(batch_size=8192, learning_rate=3e-3, max_epochs=25, patience=6)),
    "maf_b8192_e100": Candidate("maf", {"transforms": 6, "hidden": [128, 128]},
                                Train(batch_size=8192, learning_rate=3e-3, max_epochs=100, patience=100)),
    # (c) larger network
    "maf_big": Candidate("maf", {"transforms": 10, "hidden": [256, 256]}, Train(max_epochs=25, patience=6)),
    # (e) zuko flows inside the same ball map + standardisation
    "zuko_maf": Candidate("zuko_maf", {"transforms": 6, "hidden": [128, 128]}, Train(),
                          "zuko MAF, SiLU, softclip log-scale; sanity check of ours"),
    "zuko_nsf": Candidate("zuko_nsf", {"transforms": 6, "hidden": [128, 128], "bins": 8}, Train(),
                          "rational-quadratic splines: density only C^1"),
    "zuko_naf": Candidate("zuko_naf", {"transforms": 3, "hidden": [128, 128], "signal": 16,
                                       "net_hidden": [32, 32]}, Train(),
                          "monotonic MLP with tanh (smooth; zuko's TwoWayELU is C^1 -> grad ln f jumps)"),
    "zuko_unaf": Candidate("zuko_unaf", {"transforms": 3, "hidden": [128, 128], "signal": 16,
                                         "net_hidden": [32, 32]}, Train(),
                           "integrated positive SiLU MLP (Gauss-Legendre 32)"),
    # learning rate / schedule
    "maf_lr3e-3_e50": Candidate("maf", {"transforms": 6, "hidden": [128, 128]},
                                Train(learning_rate=3e-3, max_epochs=50, patience=50)),
    "maf_lr3e-3_e100": Candidate("maf", {"transforms": 6, "hidden": [128, 128]},
                                 Train(learning_rate=3e-3, max_epochs=100, patience=100)),
    "maf_1M_lr3e-3_e25": Candidate("maf", {"transforms": 6, "hidden": [128, 128]},
                                   Train(learning_rate=3e-3, max_epochs=25, patience=25, n_stars=1_000_000)),
    "maf_lr1e-2_e50": Candidate("maf", {"transforms": 6, "hidden": [128, 128]},
                                Train(learning_rate=1e-2, max_epochs=50, patience=50)),
    "maf_t12_lr3e-3_e50": Candidate("maf", {"transforms": 12, "hidden": [128, 128]},
                                    Train(learning_rate=3e-3, max_epochs=50, patience=50)),
    "maf_e200": Candidate("maf", {"transforms": 6, "hidden": [128, 128]}, Train(max_epochs=200, patience=200)),
    "maf_big_e50": Candidate("maf", {"transforms": 10, "hidden": [256, 256]}, Train(max_epochs=50, patience=50)),
    # (g) more stars (a future "accurate" profile)
    "maf_1M_e25": Candidate("maf", {"transforms": 6, "hidden": [128, 128]},
                            Train(max_epochs=25, patience=25, n_stars=1_000_000)),
    "maf_1M_e50": Candidate("maf", {"transforms": 6, "hidden": [128, 128]},
                            Train(max_epochs=50, patience=50, n_stars=1_000_000)),
    # smooth, more expressive elementwise transform at MAF cost
    "maf_sas": Candidate("maf_sas", {"transforms": 6, "hidden": [128, 128]}, Train(),
                         "affine + sinh-arcsinh MAF (C-infinity)"),
    "maf_sas_e50": Candidate("maf_sas", {"transforms": 6, "hidden": [128, 128]}, Train(max_epochs=50, patience=50),
                             "affine + sinh-arcsinh MAF (C-infinity)"),
    "maf_mog3_lr3e-3_e50": Candidate("maf_mog", {"transforms": 6, "hidden": [128, 128], "components": 3},
                                     Train(learning_rate=3e-3, max_epochs=50, patience=50),
                                     "MAF with a 3-component Gaussian-mixture base"),
    # (f) continuous flow by conditional flow matching
    "cfm": Candidate("cfm", {"hidden": [128, 128, 128], "ode_steps": 16}, Train(batch_size=2048, max_epochs=100, patience=100),
                     "flow matching; ln f by RK4 (16 steps) with exact divergence"),
}


# ----------------------------------------------------------------------------------------------
# Models: every candidate is a module with log_prob_standard(z) on standardised unbounded
# coordinates; PhaseSpaceFlow adds the ball map and the standardisation (as dpot_hpc.models.flows.Flow).
# ----------------------------------------------------------------------------------------------
class TanhTwoWay(nn.Module):
    """Smooth monotonic activation for zuko's MonotonicMLP (replaces its C^1 TwoWayELU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) + 0.05 * x  # strictly increasing, not saturating


class ZukoCore(nn.Module):
    """A zuko flow (unconditional) as log_prob_standard / sample_standard."""

    def __init__(self, family: str, arch: dict, seed: int):
        super().__init__()
        import zuko

        torch.manual_seed(seed)
        hidden = tuple(arch["hidden"])
        common = dict(transforms=arch["transforms"], randperm=True, hidden_features=hidden, activation=nn.SiLU)
        if family == "zuko_maf":
            self.flow = zuko.flows.MAF(D, **common)
        elif family == "zuko_nsf":
            self.flow = zuko.flows.NSF(D, bins=arch.get("bins", 8), **common)
        elif family == "zuko_naf":
            self.flow = zuko.flows.NAF(D, signal=arch["signal"], network={"hidden_features": tuple(arch["net_hidden"])},
                                       **common)
            for mod in self.flow.modules():  # swap the C^1 TwoWayELU for a smooth monotonic function
                for name, child in list(mod.named_children()):
                    if type(child).__name__ == "TwoWayELU":
                        setattr(mod, name, TanhTwoWay())
        elif family == "zuko_unaf":
            self.flow = zuko.flows.UNAF(D, signal=arch["signal"],
                                        network={"hidden_features": tuple(arch["net_hidden"]), "activation": nn.SiLU},
                                        **common)
        else:
            raise ValueError(family)

    def log_prob_standard(self, z: torch.Tensor) -> torch.Tensor:
        return self.flow().log_prob(z)

    @torch.no_grad()
    def sample_standard(self, n: int) -> torch.Tensor:
        return self.flow().sample((n,))


class OurMAFCore(nn.Module):
    """dpot_hpc.models.flows.Flow's MADE stack (its own wrapper is bypassed: PhaseSpaceFlow does that)."""

    def __init__(self, arch: dict, seed: int):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.flow = Flow(arch["transforms"], list(arch["hidden"]), order_seed=seed, r_max_kpc=1.0)

    def log_prob_standard(self, z: torch.Tensor) -> torch.Tensor:
        return self.flow.log_prob_standard(z)

    @torch.no_grad()
    def sample_standard(self, n: int) -> torch.Tensor:
        dtype = next(self.parameters()).dtype
        return self.flow.from_base(torch.randn(n, D, dtype=dtype))


class MoGMAFCore(nn.Module):
    """Our MAF with a mixture-of-Gaussians base (K diagonal components, learned weights, means, scales):
    scale mixtures (two dispersions) become natural for the base, the flow stays C-infinity."""

    def __init__(self, arch: dict, seed: int):
        super().__init__()
        k = arch.get("components", 3)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.flow = Flow(arch["transforms"], list(arch["hidden"]), order_seed=seed, r_max_kpc=1.0)
        self.logits = nn.Parameter(torch.zeros(k))
        self.means = nn.Parameter(torch.zeros(k, D))
        self.log_scales = nn.Parameter(torch.linspace(-0.5, 0.5, k)[:, None].repeat(1, D).clone())

    def log_prob_standard(self, z: torch.Tensor) -> torch.Tensor:
        u, logdet = self.flow.to_base(z)
        d = (u[:, None, :] - self.means) * torch.exp(-self.log_scales)
        comp = -0.5 * (d**2).sum(-1) - self.log_scales.sum(-1) - 0.5 * D * math.log(2 * math.pi)
        return torch.logsumexp(torch.log_softmax(self.logits, 0) + comp, dim=-1) + logdet

    @torch.no_grad()
    def sample_standard(self, n: int) -> torch.Tensor:
        k = torch.multinomial(torch.softmax(self.logits, 0), n, replacement=True)
        u = self.means[k] + torch.exp(self.log_scales[k]) * torch.randn(n, D, dtype=self.means.dtype)
        return self.flow.from_base(u)


class CFMCore(nn.Module):
    """Continuous flow trained by conditional flow matching (linear/OT path, Lipman et al. 2023).

    Velocity field v(z, t) (SiLU MLP, input (z, t, sin/cos of 2 pi t)); z_1 = data, z_0 ~ N(0, I).
    ln p(z_1) = ln N(z_0) - int_0^1 div v dt, by fixed-step RK4 from t = 1 back to 0 with the exact
    divergence (6 vector-Jacobian products per evaluation); gradients by autograd through the solver.
    """

    def __init__(self, arch: dict, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        widths = [D + 3, *arch["hidden"]]
        layers = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        layers.append(nn.Linear(widths[-1], D))
        self.net = nn.Sequential(*layers)
        self.steps = int(arch.get("ode_steps", 16))
        self.sigma_min = float(arch.get("sigma_min", 1e-4))
        self.gen = torch.Generator().manual_seed(seed + 7)

    def velocity(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.reshape(-1, 1).expand(z.shape[0], 1)
        return self.net(torch.cat([z, t, torch.sin(2 * math.pi * t), torch.cos(2 * math.pi * t)], -1))

    def training_loss(self, z1: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        g = generator or self.gen
        z0 = torch.randn(z1.shape, generator=g, dtype=z1.dtype)
        t = torch.rand(z1.shape[0], 1, generator=g, dtype=z1.dtype)
        zt = (1 - (1 - self.sigma_min) * t) * z0 + t * z1
        target = z1 - (1 - self.sigma_min) * z0
        return ((self.velocity(zt, t) - target) ** 2).sum(-1).mean()

    def _div_field(self, z: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.requires_grad_(True)
            v = self.velocity(z, t)
            div = torch.zeros(z.shape[0], dtype=z.dtype)
            for i in range(D):
                (gi,) = torch.autograd.grad(v[:, i].sum(), z, create_graph=True)
                div = div + gi[:, i]
        return v, div

    def log_prob_standard(self, z: torch.Tensor) -> torch.Tensor:
        n = self.steps
        h = -1.0 / n
        logdet = torch.zeros(z.shape[0], dtype=z.dtype)
        for k in range(n):
            t = torch.tensor([[1.0 + k * h]], dtype=z.dtype)
            v1, d1 = self._div_field(z, t)
            v2, d2 = self._div_field(z + 0.5 * h * v1, t + 0.5 * h)
            v3, d3 = self._div_field(z + 0.5 * h * v2, t + 0.5 * h)
            v4, d4 = self._div_field(z + h * v3, t + h)
            z = z + h / 6 * (v1 + 2 * v2 + 2 * v3 + v4)
            logdet = logdet + h / 6 * (d1 + 2 * d2 + 2 * d3 + d4)  # = -int_0^1 div dt accumulated backwards
        # ln p1 = ln p0(z0) - int_0^1 div v dt; integrating from 1 to 0 with h < 0 gives logdet = -int div
        return -0.5 * (z**2).sum(-1) - 0.5 * D * math.log(2 * math.pi) + logdet

    @torch.no_grad()
    def sample_standard(self, n_pts: int) -> torch.Tensor:
        z = torch.randn(n_pts, D, dtype=next(self.parameters()).dtype)
        h = 1.0 / self.steps
        for k in range(self.steps):
            t = torch.tensor([[k * h]], dtype=z.dtype)
            v1 = self.velocity(z, t)
            v2 = self.velocity(z + 0.5 * h * v1, t + 0.5 * h)
            v3 = self.velocity(z + 0.5 * h * v2, t + 0.5 * h)
            v4 = self.velocity(z + h * v3, t + h)
            z = z + h / 6 * (v1 + 2 * v2 + 2 * v3 + v4)
        return z


class MADEk(nn.Module):
    """dpot_hpc.models.flows.MADE with k outputs per dimension (SiLU, zero-initialised output = identity)."""

    def __init__(self, order: torch.Tensor, hidden: list[int], k: int):
        super().__init__()
        self.k = k
        deg_in = torch.empty(D, dtype=torch.long)
        deg_in[order] = torch.arange(D)
        degs = [deg_in] + [torch.arange(h) % (D - 1) for h in hidden]
        widths = [D, *hidden]
        layers, masks = [], []
        for i in range(len(hidden)):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            masks.append((degs[i + 1][:, None] >= degs[i][None, :]).float())
        out = nn.Linear(widths[-1], k * D)
        masks.append((deg_in.repeat(k)[:, None] > degs[-1][None, :]).float())
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.layers = nn.ModuleList([*layers, out])
        for i, m in enumerate(masks):
            self.register_buffer(f"mask{i}", m)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = x
        for i, layer in enumerate(self.layers):
            h = nn.functional.linear(h, layer.weight * getattr(self, f"mask{i}"), layer.bias)
            if i < len(self.layers) - 1:
                h = nn.functional.silu(h)
        return list(h.split(D, dim=-1))


class SASMAFCore(nn.Module):
    """MAF whose elementwise transform is affine followed by sinh-arcsinh (Jones & Pewsey 2009):
    u = sinh(delta asinh((z - m) e^-s) - eps). C-infinity, analytic inverse and log-det, it adds
    per-dimension skew (eps) and tail weight / peakedness (delta) at the cost of an affine MAF."""

    def __init__(self, arch: dict, seed: int):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            g = torch.Generator().manual_seed(int(seed))
            orders = [torch.randperm(D, generator=g) for _ in range(arch["transforms"])]
            self.made = nn.ModuleList([MADEk(o, list(arch["hidden"]), 4) for o in orders])

    @staticmethod
    def _params(out):
        shift, raw_s, raw_e, raw_d = out
        return shift, 4.0 * torch.tanh(raw_s / 4.0), 3.0 * torch.tanh(raw_e / 3.0), 1.5 * torch.tanh(raw_d / 1.5)

    def log_prob_standard(self, z: torch.Tensor) -> torch.Tensor:
        logdet = torch.zeros(z.shape[:-1], dtype=z.dtype)
        for made in self.made:
            m, ls, eps, ld = self._params(made(z))
            y = (z - m) * torch.exp(-ls)
            a = torch.exp(ld) * torch.asinh(y) - eps
            z = torch.sinh(a)
            logdet = logdet + (-ls + ld + torch.log(torch.cosh(a)) - 0.5 * torch.log1p(y * y)).sum(-1)
        return -0.5 * (z**2).sum(-1) - 0.5 * D * math.log(2 * math.pi) + logdet

    @torch.no_grad()
    def sample_standard(self, n: int) -> torch.Tensor:
        u = torch.randn(n, D, dtype=next(self.parameters()).dtype)
        for made in reversed(self.made):
            x = torch.zeros_like(u)
            for _ in range(D):
                m, ls, eps, ld = self._params(made(x))
                y = torch.sinh((torch.asinh(u) + eps) * torch.exp(-ld))
                x = y * torch.exp(ls) + m
            u = x
        return u


class PhaseSpaceFlow(nn.Module):
    """Ball map (atanh) + standardisation around a core density, as in dpot_hpc.models.flows.Flow."""

    def __init__(self, core: nn.Module, r_max_kpc: float):
        super().__init__()
        self.core = core
        self.r_max = float(r_max_kpc)
        self.register_buffer("mean", torch.zeros(D, dtype=torch.float64))
        self.register_buffer("std", torch.ones(D, dtype=torch.float64))
        self.register_buffer("log_n_stars", torch.zeros((), dtype=torch.float64))

    @property
    def dtype(self) -> torch.dtype:
        return next(self.core.parameters()).dtype

    def to_unbounded(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, logdet = ball_to_space(w[..., :3], self.r_max)
        return torch.cat([y, w[..., 3:]], -1), logdet

    def set_standardisation(self, stars: torch.Tensor, n_stars: int) -> None:
        u = self.to_unbounded(stars)[0]
        self.mean.copy_(u.mean(0))
        self.std.copy_(u.std(0))
        self.log_n_stars.fill_(math.log(n_stars))

    def standardise(self, w: torch.Tensor) -> torch.Tensor:
        return ((self.to_unbounded(w)[0] - self.mean) / self.std).to(self.dtype)

    def log_prob_standard(self, z: torch.Tensor) -> torch.Tensor:
        return self.core.log_prob_standard(z)

    def log_prob(self, w: torch.Tensor) -> torch.Tensor:
        """ln f (stars per kpc^3 (km/s)^3) at physical points w (N, 6) float64."""
        u, logdet = self.to_unbounded(w)
        z = ((u - self.mean) / self.std).to(self.dtype)
        return self.core.log_prob_standard(z).to(w.dtype) - torch.log(self.std).sum() + logdet + self.log_n_stars

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        u = self.core.sample_standard(n).to(torch.float64) * self.std + self.mean
        return torch.cat([space_to_ball(u[..., :3], self.r_max), u[..., 3:]], -1)


def build_model(cand: Candidate, seed: int, r_max_kpc: float) -> PhaseSpaceFlow:
    if cand.family == "maf":
        core = OurMAFCore(cand.arch, seed)
    elif cand.family == "maf_sas":
        core = SASMAFCore(cand.arch, seed)
    elif cand.family == "cfm":
        core = CFMCore(cand.arch, seed)
    elif cand.family == "maf_mog":
        core = MoGMAFCore(cand.arch, seed)
    else:
        core = ZukoCore(cand.family, cand.arch, seed)
    model = PhaseSpaceFlow(core, r_max_kpc)
    if cand.train.float64:
        model = model.double()
    return model


def eval_batch(cand: Candidate) -> int:
    """Points per ln f + gradient batch: the CFM's graph through the RK4 solver and its exact
    divergence holds ~5 MB per point (5000 points ran out of 23 GB)."""
    return 200 if cand.family == "cfm" else 5000


def log_prob_and_gradients(model: PhaseSpaceFlow, w: torch.Tensor, batch: int = 5000):
    """(ln f, d ln f/d w) at physical points, batched."""
    lps, gs = [], []
    for i in range(0, w.shape[0], batch):
        wb = w[i : i + batch].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            lp = model.log_prob(wb)
            (g,) = torch.autograd.grad(lp.sum(), wb)
        lps.append(lp.detach())
        gs.append(g.detach())
    return torch.cat(lps), torch.cat(gs)


# ----------------------------------------------------------------------------------------------
# Training (fit_df.train_flow's logic: shuffled validation split, AdamW, cosine LR, clipping,
# early stopping on validation, best weights kept; no checkpoints)
# ----------------------------------------------------------------------------------------------
def train_model(cand: Candidate, stars: torch.Tensor, seed: int, r_max_kpc: float, log=print):
    t = cand.train
    n = stars.shape[0]
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    n_val = max(1, int(round(t.validation_fraction * n)))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    model = build_model(cand, seed, r_max_kpc)
    model.set_standardisation(stars[train_idx], n)
    z_train = model.standardise(stars[train_idx])
    z_val = model.standardise(stars[val_idx])
    opt = torch.optim.AdamW(model.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay)
    steps_per_epoch = max(1, math.ceil(z_train.shape[0] / t.batch_size))
    total = steps_per_epoch * t.max_epochs
    warm = int(t.warmup_epochs * steps_per_epoch)

    def lr_at(step: int) -> float:
        if step < warm:
            return t.learning_rate * (step + 1) / warm
        c = 0.5 * (1.0 + math.cos(math.pi * min(step - warm, total - warm) / max(1, total - warm)))
        return t.learning_rate * (t.final_lr_fraction + (1 - t.final_lr_fraction) * c)

    cfm = hasattr(model.core, "training_loss")

    def loss_fn(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if cfm:  # flow matching: the regression loss (no likelihood during training)
            return model.core.training_loss(z, generator)
        return -model.log_prob_standard(z).mean()

    def val_loss() -> float:
        model.eval()
        vgen = torch.Generator().manual_seed(99)  # same noise every epoch for the CFM loss
        with torch.no_grad() if cand.family != "zuko_naf" else torch.enable_grad():
            tot = 0.0
            for i in range(0, z_val.shape[0], 8192):
                zb = z_val[i : i + 8192]
                tot += loss_fn(zb, vgen).detach().double().item() * zb.shape[0]
        model.train()
        return tot / z_val.shape[0]

    shuffle = torch.Generator().manual_seed(seed + 1)
    best_val, best_epoch, bad, step = math.inf, -1, 0, 0
    best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    history = []
    model.train()
    for epoch in range(1, t.max_epochs + 1):
        te = time.perf_counter()
        order = torch.randperm(z_train.shape[0], generator=shuffle)
        run = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * t.batch_size : (b + 1) * t.batch_size]
            lr = lr_at(step)
            for g in opt.param_groups:
                g["lr"] = lr
            loss = loss_fn(z_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad_norm)
            opt.step()
            step += 1
            run += loss.item()
        vl = val_loss()
        history.append([epoch, run / steps_per_epoch, vl, lr, time.perf_counter() - te])
        if vl < best_val:
            best_val, best_epoch, bad = vl, epoch, 0
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
        log(f"  epoch {epoch}/{t.max_epochs} train {run / steps_per_epoch:.4f} val {vl:.4f} lr {lr:.2e} "
            f"({history[-1][-1]:.1f}s)")
        if bad >= t.patience:
            log(f"  early stop: best val {best_val:.4f} at epoch {best_epoch}")
            break
    model.load_state_dict(best)
    model.eval()
    return model, {"best_val": best_val, "best_epoch": best_epoch, "epochs_run": len(history), "history": history}


# ----------------------------------------------------------------------------------------------
# Data and metrics
# ----------------------------------------------------------------------------------------------
def mock_and_cfg():
    cfg = load_config(None)
    return mock_galaxy(cfg), cfg


def training_stars(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(stars (n, 6) float64, log_c of that draw); the default mock's draw (seed 1), cached."""
    path = OUT / f"train_{n}.pt"
    if not path.exists():
        mock, _ = mock_and_cfg()
        s = sample(mock, n, seed=1)
        OUT.mkdir(parents=True, exist_ok=True)
        torch.save({"w": torch.cat([s.x_h, s.v_h], -1), "log_c": s.log_c}, path)
    d = torch.load(path)
    return d["w"], d["log_c"]


def eval_set() -> dict[str, torch.Tensor]:
    """20,000 held-out true stars with |x| < 0.9 kpc and their exact ln f (N = 200,000 normalisation),
    gradients, the true acceleration; cached."""
    path = OUT / "eval.pt"
    if not path.exists():
        mock, cfg = mock_and_cfg()
        s = sample(mock, 32_000, seed=EVAL_SEED)
        keep = torch.linalg.vector_norm(s.x_h, dim=-1) < EVAL_R_MAX
        x, v = s.x_h[keep][:N_EVAL], s.v_h[keep][:N_EVAL]
        assert x.shape[0] == N_EVAL
        _, log_c_200k = training_stars(200_000)
        lf, gx, gv = log_df_gradients(mock, log_c_200k, x, v)
        _, accel, _ = truth_fields(mock, x)
        OUT.mkdir(parents=True, exist_ok=True)
        torch.save({"w": torch.cat([x, v], -1), "log_f": lf, "grad": torch.cat([gx, gv], -1),
                    "accel": accel.detach()}, path)
    return torch.load(path)


def rel_err(fit: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(fit - true, dim=-1) / torch.linalg.vector_norm(true, dim=-1)


def slope_through_origin(fit: torch.Tensor, true: torch.Tensor) -> float:
    return float((fit * true).sum() / (true * true).sum())


def gradient_metrics(grad_fit: torch.Tensor, ev: dict, log_f_fit: torch.Tensor | None = None,
                     n_stars: int = 200_000) -> dict[str, float]:
    """The accuracy metrics of fitted gradients (N, 6) at the evaluation set (see module docstring)."""
    from dpot_hpc.physics.cbe import residual_heliocentric

    w, g = ev["w"], ev["grad"]
    ex, evv = rel_err(grad_fit[:, :3], g[:, :3]), rel_err(grad_fit[:, 3:], g[:, 3:])
    near = w[:, 2].abs() < NEAR_PLANE_Z
    sun = load_config(None).frame.sun()
    om = torch.tensor(mock_and_cfg()[0].omega_p_kms_kpc, dtype=torch.float64)
    r_fit = residual_heliocentric(w[:, :3], w[:, 3:], grad_fit[:, :3], grad_fit[:, 3:], ev["accel"], om, sun)
    scale = (w[:, 3:] * g[:, :3]).sum(-1).abs().median()
    m = {
        "gx_err": float(ex.median()), "gv_err": float(evv.median()),
        "gx_err_p90": float(ex.quantile(0.9)), "gv_err_p90": float(evv.quantile(0.9)),
        "gz_err": float(((grad_fit[:, 2] - g[:, 2]).abs() / g[:, 2].abs().clamp(min=1e-12)).median()),
        "slope_z": slope_through_origin(grad_fit[near, 2], g[near, 2]),
        "slope_z_all": slope_through_origin(grad_fit[:, 2], g[:, 2]),
        "slope_x": slope_through_origin(grad_fit[:, 0], g[:, 0]),
        "cbe_rel": float(r_fit.abs().median() / scale),
    }
    if log_f_fit is not None:
        # the truth's ln f is normalised to 200,000 stars; rescale the fit's to that count
        lf = log_f_fit - math.log(n_stars) + math.log(200_000)
        m["lnf_fit"] = float(lf.mean())
        m["lnf_true"] = float(ev["log_f"].mean())
        m["lnf_gap"] = float((ev["log_f"] - lf).mean())
    return m


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------------------------------
# Results file
# ----------------------------------------------------------------------------------------------
def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}, "ensembles": {}, "e2e": {}}


def save_results(res: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    res["machine"] = {"cpu_count": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
                      "threads": torch.get_num_threads(),
                      "note": "2 shared cores, other jobs running: wall and CPU times are noisy"}
    RESULTS.write_text(json.dumps(res, indent=1) + "\n")


def cmd_train(name: str, seed: int, label: str | None) -> None:
    cand = CANDIDATES[name]
    key = label or f"{name}/s{seed}"
    stars, _ = training_stars(cand.train.n_stars)
    ev = eval_set()
    rss0 = peak_rss_mb()
    print(f"[{key}] training on {stars.shape[0]} stars: {cand}", flush=True)
    w0, c0 = time.perf_counter(), time.process_time()
    model, info = train_model(cand, stars, seed, 1.0, log=lambda s: print(s, flush=True))
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    rss = peak_rss_mb()
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save({"state": model.state_dict()}, OUT / f"{key.replace('/', '_')}.pt")
    w1, c1 = time.perf_counter(), time.process_time()
    lf, grad = log_prob_and_gradients(model, ev["w"], batch=eval_batch(cand))
    eval_wall, eval_cpu = time.perf_counter() - w1, time.process_time() - c1
    w2 = time.perf_counter()
    try:
        model.sample(N_EVAL)
        sample_wall = time.perf_counter() - w2
    except Exception as e:  # noqa: BLE001
        sample_wall = None
        print(f"  sampling failed: {e}")
    rss_eval = peak_rss_mb()
    m = gradient_metrics(grad.double(), ev, lf.double(), cand.train.n_stars)
    n_par = sum(p.numel() for p in model.parameters())
    row = {"candidate": name, "seed": seed, "family": cand.family, "arch": cand.arch, "train": asdict(cand.train),
           "note": cand.note, "params": n_par, **m, "train_wall_s": wall, "train_cpu_s": cpu,
           "peak_rss_mb": rss, "rss_before_train_mb": rss0, "peak_rss_after_eval_mb": rss_eval, "eval_20k_wall_s": eval_wall, "eval_20k_cpu_s": eval_cpu,
           "sample_20k_wall_s": sample_wall, **{k: v for k, v in info.items() if k != "history"},
           "history": info["history"], "date": time.strftime("%Y-%m-%d %H:%M")}
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save({"state": model.state_dict(), "grad": grad, "log_f": lf}, OUT / f"{key.replace('/', '_')}.pt")
    res = load_results()
    res["runs"][key] = row
    save_results(res)
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "history"}))


def cmd_ensemble(name: str, seeds: list[int]) -> None:
    ev = eval_set()
    grads = torch.stack([torch.load(OUT / f"{name}_s{s}.pt")["grad"].double() for s in seeds])
    lfs = torch.stack([torch.load(OUT / f"{name}_s{s}.pt")["log_f"].double() for s in seeds])
    from dpot_hpc.data.cache import median0

    res = load_results()
    n_stars = CANDIDATES[name].train.n_stars
    for how, g, lf in (("median", median0(grads), median0(lfs)), ("mean", grads.mean(0), lfs.mean(0))):
        key = f"{name}/{how}{len(seeds)}"
        runs = [res["runs"][f"{name}/s{s}"] for s in seeds]
        # seed-to-seed scatter (variance part of the error) of the single flows about the ensemble mean
        gm = grads.mean(0)
        scat_x = (torch.linalg.vector_norm(grads[..., :3] - gm[:, :3], dim=-1)
                  / torch.linalg.vector_norm(ev["grad"][:, :3], dim=-1)).median()
        scat_v = (torch.linalg.vector_norm(grads[..., 3:] - gm[:, 3:], dim=-1)
                  / torch.linalg.vector_norm(ev["grad"][:, 3:], dim=-1)).median()
        res["ensembles"][key] = {"candidate": name, "how": how, "seeds": seeds,
                                 **gradient_metrics(g, ev, lf, n_stars),
                                 "seed_scatter_x": float(scat_x), "seed_scatter_v": float(scat_v),
                                 "train_wall_s": sum(r["train_wall_s"] for r in runs),
                                 "train_cpu_s": sum(r["train_cpu_s"] for r in runs),
                                 "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}
        print(key, json.dumps({k: round(v, 4) for k, v in res["ensembles"][key].items() if isinstance(v, float)}))
    save_results(res)


def cmd_e2e(name: str, seeds: list[int], n_points: int, pot_seed: int) -> None:
    """The pipeline's cache (points drawn from the flows, |x| < 0.9, per-component median of the
    flows' gradients) and one potential at the default settings on it: rho(R=R0), Omega_p, a.
    name "exact": 100k true stars with the mock's exact gradients instead (the potential stage's floor)."""
    from dpot_hpc.data.cache import median0

    mock, cfg = mock_and_cfg()
    if name == "exact":  # the potential stage's floor: true stars with the mock's exact gradients
        s = sample(mock, int(n_points * 1.45), seed=777)
        keep = torch.linalg.vector_norm(s.x_h, dim=-1) < cfg.cache.r_max_kpc
        x, v = s.x_h[keep][:n_points], s.v_h[keep][:n_points]
        _, gx, gv = log_df_gradients(mock, s.log_c, x, v)
        cache, cache_s = {"x": x, "v": v, "grad_x": gx, "grad_v": gv}, 0.0
        return _e2e_potential(name, [], n_points, pot_seed, cache, cache_s, mock, cfg)
    cand = CANDIDATES[name]
    models = []
    for s in seeds:
        m = build_model(cand, s, 1.0)
        m.load_state_dict(torch.load(OUT / f"{name}_s{s}.pt")["state"])
        models.append(m.eval())
    torch.manual_seed(pot_seed)
    w0 = time.perf_counter()
    pts = []
    per = n_points // len(models)
    for m in models:
        got, have = [], 0
        while have < per:
            w = m.sample(min(20000, 2 * (per - have) + 100))
            w = w[torch.linalg.vector_norm(w[:, :3], dim=-1) < cfg.cache.r_max_kpc]
            got.append(w)
            have += w.shape[0]
        pts.append(torch.cat(got)[:per])
    w = torch.cat(pts)
    grads = torch.stack([log_prob_and_gradients(m, w, batch=eval_batch(cand))[1].double() for m in models])
    g = median0(grads)
    cache_s = time.perf_counter() - w0
    cache = {"x": w[:, :3], "v": w[:, 3:], "grad_x": g[:, :3], "grad_v": g[:, 3:]}
    return _e2e_potential(name, seeds, n_points, pot_seed, cache, cache_s, mock, cfg)


def _e2e_potential(name, seeds, n_points, pot_seed, cache, cache_s, mock, cfg) -> None:
    from dpot_hpc.data.mockfile import truth_on_grid
    from dpot_hpc.ensemble.members import member_scalars
    from dpot_hpc.models.potential_training import train_potential

    print(f"[e2e {name}] cache of {cache['x'].shape[0]} points in {cache_s:.1f}s; training potential", flush=True)
    w1 = time.perf_counter()
    phi, omega_p, _ = train_potential(cache, cfg.potential, cfg.frame.sun(), seed=pot_seed,
                                      length_scale_kpc=cfg.catalogue.r_max_kpc)
    pot_s = time.perf_counter() - w1
    truth = truth_on_grid(mock, cfg)
    sc = member_scalars(phi, omega_p, cfg, truth["rho_baryons"], cfg.frame.sun())
    row = {"candidate": name, "seeds": seeds, "n_points": n_points, "potential_seed": pot_seed, "scalars": sc,
           "truth": truth["scalars"], "rho_ratio": sc["rho_R0"] / truth["scalars"]["rho_R0"],
           "cache_wall_s": cache_s, "potential_wall_s": pot_s}
    res = load_results()
    res["e2e"][f"{name}/{'-'.join(map(str, seeds))}/p{pot_seed}"] = row
    save_results(res)
    print(json.dumps(row, indent=1))


# ----------------------------------------------------------------------------------------------
# Markdown table
# ----------------------------------------------------------------------------------------------
def fmt_row(key: str, r: dict) -> str:
    def f(k, spec=".3f"):
        v = r.get(k)
        return "-" if v is None else format(v, spec)

    ep = f"{r['epochs_run']}({r['best_epoch']})" if "epochs_run" in r else "-"
    return (f"| {key} | {f('gx_err')} | {f('gv_err')} | {f('slope_z')} | {f('cbe_rel')} | {f('lnf_gap', '.4f')} | "
            f"{ep} | {f('train_wall_s', '.0f')} | {f('train_cpu_s', '.0f')} | {f('peak_rss_mb', '.0f')} | "
            f"{f('eval_20k_wall_s', '.1f')} | {f('sample_20k_wall_s', '.1f')} |")


def cmd_table() -> str:
    res = load_results()
    head = ("| candidate | grad_x err | grad_v err | z-slope (abs z<0.2) | CBE rel | ln f gap (nats) | epochs (best) | "
            "train wall s | train CPU s | peak RSS MB | lnf+grad 20k s | sample 20k s |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head] + [fmt_row(k, r) for k, r in res["runs"].items()]
    lines += [fmt_row(k, r) for k, r in res["ensembles"].items()]
    if res["ensembles"]:
        lines.append("\nSeed scatter (median over points of |g_i - g_mean| / |g_true|, single flows about their "
                     "3-flow mean): " + "; ".join(
                         f"{r['candidate']} x {r['seed_scatter_x']:.3f}, v {r['seed_scatter_v']:.3f}"
                         for k, r in res["ensembles"].items() if r["how"] == "median"))
    out = "\n".join(lines)
    if res.get("e2e"):
        out += ("\n\n| end-to-end (flows seeds / potential seed) | rho(R0) Msun/pc^3 | truth | ratio | z-slope of the flows | "
                "Omega_p | a_x (truth) | a_z (truth) | potential wall s |\n|---|---|---|---|---|---|---|---|---|\n")
        for k, r in res["e2e"].items():
            s, t = r["scalars"], r["truth"]
            seeds = r["seeds"]
            src = (res["runs"].get(f"{r['candidate']}/s{seeds[0]}") if len(seeds) == 1
                   else res["ensembles"].get(f"{r['candidate']}/median{len(seeds)}"))
            slope = f"{src['slope_z']:.3f}" if src else "1 (exact)"
            out += (f"| {k} | {s['rho_R0']:.4f} | {t['rho_R0']:.4f} | {r['rho_ratio']:.3f} | {slope} | "
                    f"{s['omega_p']:.2f} | {s['a_x']:.3f} ({t['a_x']:.3f}) | {s['a_z']:.3f} ({t['a_z']:.3f}) | "
                    f"{r['potential_wall_s']:.0f} |\n")
    print(out)
    # the exploration notes keep their hand-written text above "## Table"; the table below it is regenerated
    marker = "## Table\n"
    head_text = TABLE.read_text().split(marker)[0] if TABLE.exists() else "# DF gradient accuracy\n\n"
    TABLE.write_text(head_text + marker + "\n" + out + "\n")
    return out


def main() -> None:
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train")
    p.add_argument("name", choices=sorted(CANDIDATES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label")
    p = sub.add_parser("ensemble")
    p.add_argument("name")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p = sub.add_parser("e2e")
    p.add_argument("name", help="a candidate, or 'exact' (true stars, exact gradients)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n-points", type=int, default=100_000)
    p.add_argument("--potential-seed", type=int, default=7)
    sub.add_parser("table")
    sub.add_parser("data")
    a = ap.parse_args()
    if a.cmd == "train":
        cmd_train(a.name, a.seed, a.label)
    elif a.cmd == "ensemble":
        cmd_ensemble(a.name, a.seeds)
    elif a.cmd == "e2e":
        cmd_e2e(a.name, a.seeds, a.n_points, a.potential_seed)
    elif a.cmd == "data":
        training_stars(200_000)
        ev = eval_set()
        print("exact gradients on the eval set:", gradient_metrics(ev["grad"], ev, ev["log_f"]))
    else:
        cmd_table()


if __name__ == "__main__":
    main()
