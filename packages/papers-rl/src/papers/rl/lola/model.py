"""Exact iterated matrix games with memory-one policies, and the naive and LOLA learning rules.

Joint states are written from agent 1's side, (a1, a2) with C = 0, D = 1: CC, CD, DC, DD (index
2 a1 + a2). Each agent has five cooperation logits θ = (s0, CC, CD, DC, DD) read from its own side
(own action first), so agent 2 in joint state CD uses its own "DC" logit. With q1 = σ(θ1) and q2 the
cooperation probabilities of agent 2 mapped to agent 1's order (its CD and DC entries swapped):

    outcome(x, y)  = [x y, x (1 − y), (1 − x) y, (1 − x)(1 − y)]    (CC, CD, DC, DD)
    p0             = outcome(q1[s0], q2[s0])                          first-step outcome distribution
    P[s, :]        = outcome(q1[s], q2[s])                            4 × 4 transition matrix
    V_i(θ1, θ2)    = Σ_t γ^t p_tᵀ r_i = p0ᵀ (I − γ P)⁻¹ r_i,           p_{t+1}ᵀ = p_tᵀ P

and (1 − γ) V_i is agent i's average reward per step. The learning rules (Foerster et al. 2018, Sec. 3.1–3.2):

    naive:  θ1 ← θ1 + δ ∇θ1 V1
    LOLA:   θ1 ← θ1 + δ ∇θ1 V1 + δ η (∇θ2 V1)ᵀ ∇θ1 ∇θ2 V2

The LOLA term is the θ1-gradient of the first-order Taylor term (Δθ2)ᵀ ∇θ2 V1 of the look-ahead
V1(θ1, θ2 + Δθ2), Δθ2 = η ∇θ2 V2(θ1, θ2), differentiated through the opponent's naive step Δθ2 only
(∇θ2 V1 held fixed), as in the paper. It is computed with autograd (create_graph=True): the gradient
of ⟨∇θ2 V2(θ1, θ2), stop_grad(∇θ2 V1)⟩ with respect to θ1. Everything is batched over a leading
dimension of independent games (one per random initialisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "GAMES",
    "IMP",
    "IPD",
    "LEARNERS",
    "MatrixGame",
    "cooperation_probs",
    "exact_values",
    "lola_correction",
    "monte_carlo_values",
    "policy_step",
    "train_pair",
    "transition_matrix",
]

STATES = ("s0", "CC", "CD", "DC", "DD")
SWAP = (0, 1, 3, 2, 4)  # agent 2's own-side logits in agent 1's state order: CD <-> DC
LEARNERS = ("naive", "lola")


@dataclass(frozen=True)
class MatrixGame:
    """A 2 × 2 game repeated forever: ``r1[s]``, ``r2[s]`` are the rewards in joint outcome s.

    Outcomes s are CC, CD, DC, DD with agent 1's action first.
    """

    name: str
    r1: tuple[float, float, float, float]
    r2: tuple[float, float, float, float]

    def rewards(self, dtype=torch.float64, device=None) -> tuple[Tensor, Tensor]:
        return (
            torch.tensor(self.r1, dtype=dtype, device=device),
            torch.tensor(self.r2, dtype=dtype, device=device),
        )


IPD = MatrixGame("ipd", r1=(-1.0, -3.0, 0.0, -2.0), r2=(-1.0, 0.0, -3.0, -2.0))  # paper's IPD payoffs
IMP = MatrixGame("imp", r1=(1.0, -1.0, -1.0, 1.0), r2=(-1.0, 1.0, 1.0, -1.0))  # matching pennies
GAMES = {"ipd": IPD, "imp": IMP}


def _check_thetas(theta1: Tensor, theta2: Tensor) -> None:
    for name, theta in (("theta1", theta1), ("theta2", theta2)):
        if theta.shape[-1:] != (5,):
            raise ValueError(
                f"{name} must have shape [..., 5] (logits for s0, CC, CD, DC, DD), got {tuple(theta.shape)}"
            )
    if theta1.shape != theta2.shape:
        raise ValueError(
            f"theta1 and theta2 must have the same shape, got {tuple(theta1.shape)} and {tuple(theta2.shape)}"
        )


def cooperation_probs(theta1: Tensor, theta2: Tensor) -> tuple[Tensor, Tensor]:
    """σ(θ1) and σ(θ2) with agent 2's entries put in agent 1's state order, both [..., 5]."""
    _check_thetas(theta1, theta2)
    return torch.sigmoid(theta1), torch.sigmoid(theta2)[..., list(SWAP)]


def _outcome(x: Tensor, y: Tensor) -> Tensor:
    return torch.stack([x * y, x * (1 - y), (1 - x) * y, (1 - x) * (1 - y)], dim=-1)


def transition_matrix(theta1: Tensor, theta2: Tensor) -> tuple[Tensor, Tensor]:
    """(p0 [..., 4], P [..., 4, 4]): the first-step outcome distribution and the joint-state chain."""
    q1, q2 = cooperation_probs(theta1, theta2)
    return _outcome(q1[..., 0], q2[..., 0]), _outcome(q1[..., 1:], q2[..., 1:])


def exact_values(
    theta1: Tensor, theta2: Tensor, game: MatrixGame = IPD, gamma: float = 0.96
) -> tuple[Tensor, Tensor]:
    """V1, V2 = p0ᵀ (I − γP)⁻¹ r_i, each of shape ``theta1.shape[:-1]``."""
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}")
    p0, P = transition_matrix(theta1, theta2)
    eye = torch.eye(4, dtype=P.dtype, device=P.device)
    # xᵀ = p0ᵀ (I − γP)⁻¹  <=>  (I − γP)ᵀ x = p0: the discounted state-visitation vector
    visits = torch.linalg.solve((eye - gamma * P).transpose(-1, -2), p0.unsqueeze(-1)).squeeze(-1)
    r1, r2 = game.rewards(P.dtype, P.device)
    return visits @ r1, visits @ r2


def lola_correction(
    theta1: Tensor, theta2: Tensor, game: MatrixGame = IPD, gamma: float = 0.96, agent: int = 1
) -> Tensor:
    """The LOLA shaping term (∇θ2 V1)ᵀ ∇θ1∇θ2 V2 for agent 1 (``agent=2``: the mirror for agent 2).

    Batched over the leading dimensions; the games are independent, so sums over the batch give
    per-game gradients.
    """
    theta1 = theta1.detach().requires_grad_(True)
    theta2 = theta2.detach().requires_grad_(True)
    v1, v2 = exact_values(theta1, theta2, game, gamma)
    if agent == 1:
        own, other, v_own, v_other = theta1, theta2, v1, v2
    elif agent == 2:
        own, other, v_own, v_other = theta2, theta1, v2, v1
    else:
        raise ValueError(f"agent must be 1 or 2, got {agent}")
    (g_own_other,) = torch.autograd.grad(v_own.sum(), other, retain_graph=True)  # ∇θ2 V1, held fixed
    (g_other_other,) = torch.autograd.grad(v_other.sum(), other, create_graph=True)  # ∇θ2 V2(θ1, θ2)
    (correction,) = torch.autograd.grad((g_other_other * g_own_other).sum(), own)
    return correction


def policy_step(
    theta1: Tensor,
    theta2: Tensor,
    learners: tuple[str, str],
    *,
    lr: float = 1.0,
    eta: float = 1.0,
    game: MatrixGame = IPD,
    gamma: float = 0.96,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One simultaneous update of both agents; returns (θ1', θ2', V1, V2) with V at the old θ.

    ``learners[i]`` is "naive" (θ ← θ + δ ∇V) or "lola" (plus δ η times the shaping term).
    """
    for learner in learners:
        if learner not in LEARNERS:
            raise ValueError(f"unknown learner {learner!r}; expected one of {LEARNERS}")
    theta1 = theta1.detach().requires_grad_(True)
    theta2 = theta2.detach().requires_grad_(True)
    v1, v2 = exact_values(theta1, theta2, game, gamma)
    need = [learner == "lola" for learner in learners]
    g1_1, g1_2 = torch.autograd.grad(v1.sum(), (theta1, theta2), create_graph=any(need), retain_graph=True)
    g2_1, g2_2 = torch.autograd.grad(v2.sum(), (theta1, theta2), create_graph=any(need))
    step1, step2 = lr * g1_1.detach(), lr * g2_2.detach()
    if need[0]:  # ∇θ1 ⟨∇θ2 V2, stop_grad(∇θ2 V1)⟩
        (c1,) = torch.autograd.grad((g2_2 * g1_2.detach()).sum(), theta1, retain_graph=need[1])
        step1 = step1 + lr * eta * c1
    if need[1]:  # ∇θ2 ⟨∇θ1 V1, stop_grad(∇θ1 V2)⟩
        (c2,) = torch.autograd.grad((g1_1 * g2_1.detach()).sum(), theta2)
        step2 = step2 + lr * eta * c2
    return (theta1.detach() + step1, theta2.detach() + step2, v1.detach(), v2.detach())


def train_pair(
    theta1: Tensor,
    theta2: Tensor,
    learners: tuple[str, str],
    steps: int,
    *,
    lr: float = 1.0,
    eta: float = 1.0,
    game: MatrixGame = IPD,
    gamma: float = 0.96,
    callback=None,
) -> dict:
    """``steps`` simultaneous updates from (θ1, θ2) [B, 5]. Returns the final θ and, per step and game,
    the average reward per step (1 − γ) V_i, as tensors ``reward1``/``reward2`` of shape [steps + 1, B]."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    rewards1, rewards2 = [], []
    for step in range(steps):
        theta1, theta2, v1, v2 = policy_step(theta1, theta2, learners, lr=lr, eta=eta, game=game, gamma=gamma)
        rewards1.append((1 - gamma) * v1)
        rewards2.append((1 - gamma) * v2)
        if not (torch.isfinite(theta1).all() and torch.isfinite(theta2).all()):
            raise FloatingPointError(f"{learners}: non-finite policy parameters at step {step}")
        if callback is not None:
            callback(step)
    with torch.no_grad():
        v1, v2 = exact_values(theta1, theta2, game, gamma)
    rewards1.append((1 - gamma) * v1)
    rewards2.append((1 - gamma) * v2)
    return {
        "theta1": theta1,
        "theta2": theta2,
        "reward1": torch.stack(rewards1),
        "reward2": torch.stack(rewards2),
    }


def monte_carlo_values(
    theta1: Tensor,
    theta2: Tensor,
    game: MatrixGame = IPD,
    gamma: float = 0.96,
    *,
    episodes: int = 4000,
    horizon: int = 400,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Sampled discounted returns of one policy pair (θ [5]): (mean1, se1, mean2, se2) over episodes."""
    if theta1.dim() != 1:
        raise ValueError(
            f"monte_carlo_values takes one policy pair (theta of shape [5]), got {tuple(theta1.shape)}"
        )
    q1, q2 = cooperation_probs(theta1.detach(), theta2.detach())
    r1, r2 = game.rewards(q1.dtype)
    state = torch.zeros(episodes, dtype=torch.long)  # index into q: 0 = s0, 1 + joint state afterwards
    ret1 = torch.zeros(episodes, dtype=q1.dtype)
    ret2 = torch.zeros(episodes, dtype=q1.dtype)
    discount = 1.0
    for _ in range(horizon):
        defect1 = (torch.rand(episodes, generator=generator, dtype=q1.dtype) >= q1[state]).long()
        defect2 = (torch.rand(episodes, generator=generator, dtype=q1.dtype) >= q2[state]).long()
        joint = 2 * defect1 + defect2
        ret1 += discount * r1[joint]
        ret2 += discount * r2[joint]
        discount *= gamma
        state = 1 + joint
    n = float(episodes)
    return ret1.mean(), ret1.std() / n**0.5, ret2.mean(), ret2.std() / n**0.5
