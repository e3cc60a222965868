"""Differentiable rotation helpers (torch) for body models and IK.

Axis-angle vectors (..., 3) follow SMPL: direction = axis, norm = angle in radians. The conversions are smooth at
zero (Taylor terms), so gradients of IK stay finite at the rest pose.
"""

from __future__ import annotations

import torch


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> (..., 3, 3) rotation matrices (Rodrigues)."""
    theta2 = (aa * aa).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    small = theta2 < 1e-8
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2_safe.sqrt()
    # sin(t)/t and (1-cos(t))/t^2, with their series near 0.
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2_safe)
    x, y, z = aa.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*aa.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def matrix_to_axis_angle(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 3) axis-angle (angle in [0, pi])."""
    cos = ((m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2] - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    angle = torch.acos(cos)
    v = torch.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1)
    sin = torch.sin(angle)[..., None]
    aa = v / (2 * sin.clamp_min(1e-7)) * angle[..., None]
    # Near pi the antisymmetric part vanishes: take the axis from the symmetric part instead.
    near_pi = (angle > 3.1)[..., None]
    sym = (m + m.transpose(-1, -2)) / 2 - cos[..., None, None] * torch.eye(3, dtype=m.dtype, device=m.device)
    col = sym.diagonal(dim1=-2, dim2=-1).argmax(-1)
    axis = torch.gather(sym, -1, col[..., None, None].expand(*sym.shape[:-1], 1)).squeeze(-1)
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-7)
    axis = axis * torch.where((axis * v).sum(-1, keepdim=True) < 0, -1.0, 1.0)
    return torch.where(near_pi, axis * angle[..., None], aa)
