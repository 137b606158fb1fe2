"""Tabular AIRL: grid worlds, exact soft value iteration and occupancies, AIRL and GAIL discriminators.

Everything is batched over a leading dimension ``B`` (several maps trained at once) and exact: the
transition tensor ``P[b, s, a, s']`` is dense, the policy step is soft value iteration, and the
discriminator loss is the expectation over the exact discounted occupancies of the expert and of the
policy instead of a sample average.

Conventions: states are the cells of an ``height x width`` grid (``s = row * width + col``); actions
are ``ACTIONS = (stay, up, down, left, right)``; a move across a wall or off the grid leaves the agent
where it is. Rewards are functions of the current state (``r(s)``), of ``(s, a)`` or of ``(s, a, s')``;
the discounted return from the start distribution ``p0`` is ``J = E[Σ_t γ^t r_t]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

ACTIONS = ("stay", "up", "down", "left", "right")
MOVES = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))  # (d_row, d_col)


# ---------- grid worlds ----------


def grid_transitions(
    height: int, width: int, blocked: set | frozenset = frozenset(), dtype: torch.dtype = torch.float64
) -> Tensor:
    """Deterministic grid dynamics ``P[s, a, s']`` (one-hot in ``s'``).

    ``blocked`` holds thin walls as unordered pairs of adjacent cells ``frozenset({(r1, c1), (r2, c2)})``:
    a move across a blocked edge, or off the grid, leaves the agent in place.
    """
    if height < 1 or width < 1:
        raise ValueError(f"grid must be at least 1 x 1, got {height} x {width}")
    n = height * width
    P = torch.zeros(n, len(ACTIONS), n, dtype=dtype)
    for row in range(height):
        for col in range(width):
            s = row * width + col
            for a, (dr, dc) in enumerate(MOVES):
                r2, c2 = row + dr, col + dc
                inside = 0 <= r2 < height and 0 <= c2 < width
                if not inside or frozenset({(row, col), (r2, c2)}) in blocked:
                    r2, c2 = row, col
                P[s, a, r2 * width + c2] = 1.0
    return P


def wall_with_gap(height: int, col: int, gap_row: int) -> frozenset:
    """A vertical thin wall between columns ``col`` and ``col + 1`` on every row but ``gap_row``."""
    return frozenset(frozenset({(row, col), (row, col + 1)}) for row in range(height) if row != gap_row)


def _check_P(P: Tensor) -> None:
    if P.dim() != 4 or P.shape[1] != P.shape[3]:
        raise ValueError(f"P must have shape [B, S, A, S], got {tuple(P.shape)}")
    if not torch.allclose(P.sum(-1), torch.ones((), dtype=P.dtype)) or (P < 0).any():
        raise ValueError("P[b, s, a, :] must be probability distributions over next states")


def expected_reward(reward: Tensor, P: Tensor) -> Tensor:
    """``r(s, a) = Σ_s' P(s'|s, a) r(s, a, s')`` from a reward of shape [B, S], [B, S, A] or [B, S, A, S]."""
    B, S, A, _ = P.shape
    if reward.shape == (B, S):
        return reward[:, :, None].expand(B, S, A)
    if reward.shape == (B, S, A):
        return reward
    if reward.shape == (B, S, A, S):
        return (P * reward).sum(-1)
    raise ValueError(
        f"reward must have shape [B, S], [B, S, A] or [B, S, A, S] with B={B}, S={S}, A={A}; "
        f"got {tuple(reward.shape)}"
    )


# ---------- exact soft value iteration, occupancies, returns ----------


def soft_value_iteration(
    reward: Tensor,
    P: Tensor,
    gamma: float,
    alpha: float = 1.0,
    tol: float = 1e-10,
    max_iter: int = 10_000,
    method: str = "policy",
    log_pi0: Tensor | None = None,
) -> dict:
    """Entropy-regularised (soft) optimal control, exact in a tabular MDP:

        Q(s, a) = r(s, a) + γ Σ_s' P(s'|s, a) V(s'),    V(s) = α log Σ_a exp(Q(s, a) / α),
        π(a|s) = exp((Q(s, a) − V(s)) / α),

    the policy that maximises E[Σ_t γ^t (r_t + α H(π(·|s_t)))]. ``method="value"`` iterates the soft
    Bellman operator (a γ-contraction) from V = 0; ``method="policy"`` (default) is soft policy
    iteration from ``log_pi0`` (uniform if None): evaluate π exactly,
    ``V^π = (I − γ P_π)⁻¹ Σ_a π (r − α log π)``, then improve ``π ∝ exp(Q^π / α)`` — Newton's method on
    the same fixed point, a handful of linear solves. Both stop when the largest change of V is below
    ``tol``. Returns ``{"Q", "V", "pi", "log_pi", "iterations"}``.
    """
    _check_P(P)
    if not 0 <= gamma < 1:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if method not in ("policy", "value"):
        raise ValueError(f"method must be 'policy' or 'value', got {method!r}")
    B, S, A, _ = P.shape
    r_sa = expected_reward(reward, P)
    P_flat = P.reshape(B, S * A, S)

    def backup(V: Tensor) -> Tensor:
        return r_sa + gamma * torch.bmm(P_flat, V[..., None]).reshape(B, S, A)

    eye = torch.eye(S, dtype=P.dtype)
    if method == "policy":
        log_pi = torch.full((B, S, A), -math.log(A), dtype=P.dtype) if log_pi0 is None else log_pi0
        V = None
    else:
        V = torch.zeros(B, S, dtype=P.dtype)
    iterations = 0
    for _ in range(max_iter):
        iterations += 1
        if method == "policy":
            pi = log_pi.exp()
            r_pi = (pi * (r_sa - alpha * log_pi)).sum(-1)
            V_pi = torch.linalg.solve(eye - gamma * state_transitions(P, pi), r_pi[..., None])[..., 0]
            Q = backup(V_pi)
            V_new = alpha * torch.logsumexp(Q / alpha, dim=-1)
            log_pi = (Q - V_new[..., None]) / alpha
            delta = (V_new - V_pi).abs().max().item()
        else:
            V_new = alpha * torch.logsumexp(backup(V) / alpha, dim=-1)
            delta = (V_new - V).abs().max().item()
        V = V_new
        if delta < tol:
            break
    Q = backup(V)
    log_pi = (Q - V[..., None]) / alpha
    log_pi = log_pi - torch.logsumexp(log_pi, dim=-1, keepdim=True)  # exact normalisation at the last step
    return {"Q": Q, "V": V, "pi": log_pi.exp(), "log_pi": log_pi, "iterations": iterations}


def state_transitions(P: Tensor, pi: Tensor) -> Tensor:
    """The policy's state chain ``P_π[s, s'] = Σ_a π(a|s) P(s'|s, a)``."""
    return torch.einsum("bsa,bsat->bst", pi, P)


def occupancy(P: Tensor, pi: Tensor, p0: Tensor, gamma: float) -> Tensor:
    """Normalised discounted state visitation ``ρ(s) = (1 − γ) Σ_t γ^t Pr(s_t = s)``, shape [B, S].

    Solves ``ρᵀ (I − γ P_π) = (1 − γ) p0ᵀ`` exactly.
    """
    P_pi = state_transitions(P, pi)
    eye = torch.eye(P.shape[1], dtype=P.dtype)
    A = (eye - gamma * P_pi).transpose(1, 2)
    return torch.linalg.solve(A, (1 - gamma) * p0[..., None])[..., 0]


def transition_weights(P: Tensor, pi: Tensor, rho: Tensor) -> Tensor:
    """The discounted distribution of transitions ``ρ(s) π(a|s) P(s'|s, a)``, shape [B, S, A, S]."""
    return rho[:, :, None, None] * pi[..., None] * P


def policy_return(P: Tensor, pi: Tensor, p0: Tensor, reward: Tensor, gamma: float) -> Tensor:
    """Exact discounted return ``J = E[Σ_t γ^t r_t] = Σ_{s,a} ρ(s) π(a|s) r(s, a) / (1 − γ)``, shape [B]."""
    rho = occupancy(P, pi, p0, gamma)
    r_sa = expected_reward(reward, P)
    return (rho[..., None] * pi * r_sa).sum((1, 2)) / (1 - gamma)


# ---------- discriminators ----------


class AIRLDiscriminator(nn.Module):
    """AIRL's discriminator (Fu et al. 2018, Eq. 5 and Sec. 5):

        D(s, a, s') = exp f(s, a, s') / (exp f(s, a, s') + π(a|s)),   f = g(s) + γ h(s') − h(s)

    with a tabular reward approximator ``g`` (state-only [B, S], or state-action [B, S, A] for the
    ablation) and shaping potential ``h`` [B, S]. Its logit is ``f − log π``; the policy's reward
    ``log D − log(1 − D)`` equals that logit.
    """

    def __init__(self, batch: int, n_states: int, n_actions: int, gamma: float, state_only: bool = True):
        super().__init__()
        self.gamma, self.state_only, self.n_actions = gamma, state_only, n_actions
        shape = (batch, n_states) if state_only else (batch, n_states, n_actions)
        self.g = nn.Parameter(torch.zeros(shape, dtype=torch.float64))
        self.h = nn.Parameter(torch.zeros(batch, n_states, dtype=torch.float64))

    def reward(self) -> Tensor:
        """The learned reward g, broadcast to [B, S, A]."""
        g = self.g
        return g[:, :, None].expand(*g.shape, self.n_actions) if self.state_only else g

    def f(self) -> Tensor:
        """``f(s, a, s') = g(s[, a]) + γ h(s') − h(s)`` for every triple, shape [B, S, A, S]."""
        h = self.h
        return self.reward()[..., None] + self.gamma * h[:, None, None, :] - h[:, :, None, None]

    def logits(self, log_pi: Tensor) -> Tensor:
        """``log D − log(1 − D) = f(s, a, s') − log π(a|s)``, shape [B, S, A, S]."""
        if log_pi.shape != self.reward().shape:
            raise ValueError(
                f"log_pi must have shape {tuple(self.reward().shape)}, got {tuple(log_pi.shape)}"
            )
        return self.f() - log_pi[..., None]

    def D(self, log_pi: Tensor) -> Tensor:
        """``exp f / (exp f + π)``, computed as the sigmoid of the logit."""
        return torch.sigmoid(self.logits(log_pi))

    def policy_reward(self) -> Tensor:
        """The reward the entropy-regularised policy step maximises: f (the −log π term is the entropy)."""
        return self.f()

    def loss(self, log_pi: Tensor, w_expert: Tensor, w_policy: Tensor) -> Tensor:
        return discriminator_loss(self.logits(log_pi), w_expert, w_policy)


class GAILDiscriminator(nn.Module):
    """The GAIL baseline: a tabular logit ``d(s, a)``, ``D(s, a) = σ(d)``; the policy's reward is log D."""

    def __init__(self, batch: int, n_states: int, n_actions: int):
        super().__init__()
        self.d = nn.Parameter(torch.zeros(batch, n_states, n_actions, dtype=torch.float64))

    def logits(self, log_pi: Tensor | None = None) -> Tensor:
        return self.d[..., None]  # [B, S, A, 1]: broadcasts over s'

    def policy_reward(self) -> Tensor:
        """``log D(s, a) = −softplus(−d)``, shape [B, S, A]."""
        return -F.softplus(-self.d)

    def reward(self) -> Tensor:
        return self.policy_reward()

    def loss(self, log_pi: Tensor, w_expert: Tensor, w_policy: Tensor) -> Tensor:
        return discriminator_loss(
            self.logits(), w_expert.sum(-1, keepdim=True), w_policy.sum(-1, keepdim=True)
        )


def discriminator_loss(logits: Tensor, w_expert: Tensor, w_policy: Tensor) -> Tensor:
    """Binary cross-entropy with expert = 1, policy = 0, as an exact expectation per map, summed over maps:

        L = −E_{ρ_E}[log D] − E_{ρ_π}[log(1 − D)] = E_{ρ_E}[softplus(−ℓ)] + E_{ρ_π}[softplus(ℓ)],

    ``ℓ`` the logit; the weights are (normalised) transition distributions of the same shape as ``ℓ``.
    """
    per_map = (w_expert * F.softplus(-logits)).flatten(1).sum(1) + (w_policy * F.softplus(logits)).flatten(
        1
    ).sum(1)
    return per_map.sum()


# ---------- adversarial training ----------


def train_adversarial(
    kind: str,
    P: Tensor,
    p0: Tensor,
    expert_pi: Tensor,
    gamma: float,
    *,
    iterations: int = 300,
    disc_steps: int = 5,
    lr: float = 0.05,
    lr_decay: bool = True,
    alpha: float = 1.0,
    vi_tol: float = 1e-8,
    callback=None,
) -> dict:
    """Adversarial imitation with an exact policy step.

    ``kind``: ``"airl"`` (state-only g), ``"airl_sa"`` (state-action g) or ``"gail"``. Each iteration:
    (1) the policy is soft-optimal (temperature ``alpha``; AIRL's own objective fixes α = 1) for the
    discriminator's policy reward (AIRL: f, i.e. log D − log(1 − D) with its −log π as the entropy
    bonus; GAIL: log D), by soft policy iteration warm-started from the last policy; (2)
    ``disc_steps`` Adam steps (learning rate decayed linearly to 0 if ``lr_decay``) on the exact
    discriminator loss between the expert's and the policy's transition distributions.
    ``callback(iteration, disc, policy)`` is called after each iteration.
    Returns ``{"disc", "pi", "log_pi", "losses"}``.
    """
    B, S, A, _ = P.shape
    if kind in ("airl", "airl_sa"):
        disc = AIRLDiscriminator(B, S, A, gamma, state_only=kind == "airl")
    elif kind == "gail":
        disc = GAILDiscriminator(B, S, A)
    else:
        raise ValueError(f"kind must be 'airl', 'airl_sa' or 'gail', got {kind!r}")
    w_expert = transition_weights(P, expert_pi, occupancy(P, expert_pi, p0, gamma))
    optimizer = torch.optim.Adam(disc.parameters(), lr=lr)
    total = iterations * disc_steps
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1 - k / total if lr_decay else 1.0)
    log_pi, losses = None, []
    for iteration in range(iterations):
        with torch.no_grad():
            policy = soft_value_iteration(
                disc.policy_reward(), P, gamma, alpha=alpha, tol=vi_tol, log_pi0=log_pi
            )
        log_pi = policy["log_pi"]
        w_policy = transition_weights(P, policy["pi"], occupancy(P, policy["pi"], p0, gamma))
        for _ in range(disc_steps):
            optimizer.zero_grad()
            loss = disc.loss(log_pi, w_expert, w_policy)
            loss.backward()
            optimizer.step()
            schedule.step()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{kind}: non-finite discriminator loss at iteration {iteration}")
        losses.append(loss.item() / B)
        if callback is not None:
            callback(iteration, disc, policy)
    with torch.no_grad():
        policy = soft_value_iteration(disc.policy_reward(), P, gamma, alpha=alpha, tol=vi_tol, log_pi0=log_pi)
    return {"disc": disc, "pi": policy["pi"], "log_pi": policy["log_pi"], "losses": losses}
