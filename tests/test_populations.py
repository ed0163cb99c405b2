"""A DF model of several flows (df.populations): a normalised density whose sampler draws each part as
often as its weight, and whose first part starts as the single flow of the same seed."""

import math

import torch

from dpot_hpc.config import DFSection
from dpot_hpc.models.df_training import build_flow
from dpot_hpc.models.flows import Flow

R_MAX_KPC = 1.0


def _shaped(flow: Flow, seed: int) -> Flow:
    """The flow with every part's output layers set to random values (a new flow is the identity map),
    standardised to a phase-space scale (0.3 kpc, 30 km/s), in float64."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for part in flow.parts:
            for made in part:
                out = made.layers[-1]
                out.weight.copy_(0.3 * torch.randn(out.weight.shape, generator=g))
                out.bias.copy_(0.3 * torch.randn(out.bias.shape, generator=g))
    flow.set_standardisation(torch.zeros(6, dtype=torch.float64),
                             torch.tensor([0.3, 0.3, 0.3, 30.0, 30.0, 30.0], dtype=torch.float64), 1)
    return flow.double().eval()


def test_a_mixture_is_normalised_and_samples_each_part_as_often_as_its_weight():
    """For stars drawn from the mixture p = sum_k w_k p_k: the mean of q/p for a normalised q (here the
    single flow that is its first part, p_0) is 1, and the mean of the first part's responsibility
    w_0 p_0/p is w_0; both within 4 standard errors of 40,000 draws."""
    df = DFSection(transforms=2, hidden=[16, 16], populations=2)
    mixture = _shaped(build_flow(df, 5, R_MAX_KPC), 11)
    with torch.no_grad():
        mixture.mixture_logits.copy_(torch.log(torch.tensor([0.7, 0.3], dtype=torch.float64)))
    single = _shaped(build_flow(DFSection(transforms=2, hidden=[16, 16]), 5, R_MAX_KPC), 11)
    # the same random shape for the single flow as for part 0 (drawn first)
    assert all(torch.equal(a, b) for a, b in zip(single.made.parameters(), mixture.made.parameters()))
    w = mixture.sample(40_000, torch.Generator().manual_seed(2))
    assert bool((torch.linalg.vector_norm(w[:, :3], dim=-1) < R_MAX_KPC).all())
    with torch.no_grad():
        ratio = torch.exp(single.log_prob(w) - mixture.log_prob(w))  # p_0 / p
    for values, expected in ((ratio, 1.0), (0.7 * ratio, 0.7)):
        se = values.std().item() / math.sqrt(values.numel())
        assert abs(values.mean().item() - expected) < 4 * se, (values.mean().item(), expected, se)
    # the parts differ: p_0/p is far from 1 at many stars
    assert ratio.std().item() > 0.2


def test_the_first_part_starts_as_the_single_flow_of_its_seed():
    """Adding parts leaves the initial weights and autoregressive orders of part 0 as a single flow of
    the same seed has them (so a mixture's seed is reproducible part by part), and the parts differ."""
    single = build_flow(DFSection(), 7, R_MAX_KPC)
    mixture = build_flow(DFSection(populations=3), 7, R_MAX_KPC)
    assert len(mixture.parts) == 3
    mine = {k: v for k, v in mixture.state_dict().items() if k.startswith("made.")}
    theirs = {k: v for k, v in single.state_dict().items() if k.startswith("made.")}
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    first = mixture.parts[1][0].layers[0].weight
    assert not torch.equal(first, mixture.parts[0][0].layers[0].weight)
    assert torch.allclose(mixture.log_weights().exp(), torch.full((3,), 1 / 3))
