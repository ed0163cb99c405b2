"""Exact first and second derivatives of a scalar field by nested autograd (no finite differences).

Used for the analytic galaxy's truth (a = -grad Phi, rho = Laplacian Phi / 4 pi G) and for the
potential network where training needs the Laplacian at a few points; the network also has a one-pass
propagation for evaluation (``models.potential.fields``), tested equal to this.
"""

from __future__ import annotations

from typing import Callable

import torch


def gradient_and_laplacian(
    phi_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, create_graph: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Phi, grad Phi, Laplacian Phi) of ``phi_fn`` at points x (N, D), exact by nested autograd.

    Units follow phi_fn's: for Phi in (km/s)^2 and x in kpc, grad in (km/s)^2/kpc and the Laplacian in
    (km/s)^2/kpc^2. With create_graph the results stay differentiable with respect to phi_fn's
    parameters (training); otherwise they are detached.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        phi = phi_fn(x)
        (grad,) = torch.autograd.grad(phi.sum(), x, create_graph=True)
        lap = torch.zeros_like(phi)
        for i in range(x.shape[-1]):
            (h,) = torch.autograd.grad(grad[..., i].sum(), x, create_graph=create_graph, retain_graph=True)
            lap = lap + h[..., i]
    if not create_graph:
        phi, grad, lap = phi.detach(), grad.detach(), lap.detach()
    return phi, grad, lap


def gradient_and_hessian(
    phi_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Phi (N,), grad Phi (N, D), Hessian (N, D, D)) of ``phi_fn`` at points x (N, D), exact by
    nested autograd, detached. Units follow phi_fn's (for x in kpc: per kpc and per kpc^2)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        phi = phi_fn(x)
        (grad,) = torch.autograd.grad(phi.sum(), x, create_graph=True)
        rows = [torch.autograd.grad(grad[..., i].sum(), x, retain_graph=True)[0] for i in range(x.shape[-1])]
    return phi.detach(), grad.detach(), torch.stack(rows, dim=-2)
