"""PopArt: adaptive rescaling of value targets that preserves the unnormalised outputs exactly.

van Hasselt, Guez, Hessel, Mnih, Silver (2016), Sec. 2; per-task statistics as in Hessel et al. (2019).

A linear head on features h gives the normalised output n(h) = W h + b; the value is the unnormalised

    V(h) = σ n(h) + μ                                             (μ, σ are statistics, not parameters)

After each batch of targets y (per task), first and second moments move with step size β:

    μ' = (1 − β) μ + β E[y],    ν' = (1 − β) ν + β E[y²],    σ' = sqrt(max(ν' − μ'², σ_min²))  (≤ σ_max)

("ART": Adaptively Rescaling Targets), and the head is rescaled so every output is unchanged

    W' = σ W / σ',    b' = (σ b + μ − μ') / σ'                   ⇒  σ' (W' h + b') + μ' = σ (W h + b) + μ

("Pop": Preserving Outputs Precisely). The loss is on normalised targets, ½ ((y − μ')/σ' − n(h))², so
gradients reach W, b and the layers below only through n; μ and σ are buffers.

With ``debias=True`` the step of update t (t = 1, 2, ... per task) is β_t = β / (1 − (1 − β)^t), the
bias correction of an exponential average started at zero: the first update sets μ, ν to the batch
moments instead of pulling them from the arbitrary start (μ = 0, ν = 1, σ = 1). σ is floored at
``sigma_min`` = 1e-4 (and capped at ``sigma_max`` = 1e6) so that W/σ' never divides by ~0.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MODES", "PopArt", "preserve_outputs", "scale_from_moments", "update_moments"]

MODES = ("popart", "art", "none")


def update_moments(mu: Tensor, nu: Tensor, y_mean: Tensor, y_sq_mean: Tensor, beta) -> tuple[Tensor, Tensor]:
    """μ' = (1 − β) μ + β E[y],  ν' = (1 − β) ν + β E[y²]  (elementwise; β a number or a tensor)."""
    return (1 - beta) * mu + beta * y_mean, (1 - beta) * nu + beta * y_sq_mean


def scale_from_moments(mu: Tensor, nu: Tensor, sigma_min: float = 1e-4, sigma_max: float = 1e6) -> Tensor:
    """σ = sqrt(ν − μ²), floored at ``sigma_min`` and capped at ``sigma_max``."""
    return (nu - mu * mu).clamp(min=sigma_min**2).sqrt().clamp(max=sigma_max)


def preserve_outputs(
    weight: Tensor, bias: Tensor, mu: Tensor, sigma: Tensor, new_mu: Tensor, new_sigma: Tensor
) -> tuple[Tensor, Tensor]:
    """W' = σ W / σ',  b' = (σ b + μ − μ') / σ'.  ``weight`` is [..., H]; the others are [...]."""
    weight = weight * (sigma / new_sigma).unsqueeze(-1)
    bias = (sigma * bias + mu - new_mu) / new_sigma
    return weight, bias


class PopArt(nn.Module):
    """A value head with one normalised output per task and per-task statistics (μ_k, ν_k).

    mode "popart": adaptive statistics and the preserve step; "art": adaptive statistics, no preserve
    step (the outputs jump whenever μ, σ change); "none": μ = 0, σ = 1 forever (plain value learning;
    then the normalised output is the value).

        head = PopArt(64, num_tasks=3, beta=3e-3)
        n = head(h, task)                    # normalised outputs n_task(h), shape [B]
        head.update(targets, task)           # statistics (+ preserve step) from unnormalised targets
        loss = 0.5 * (head.normalise(targets, task) - head(h, task)).pow(2).mean()
        v = head.unnormalise(n, task)        # σ_task n + μ_task
    """

    def __init__(
        self,
        in_features: int,
        num_tasks: int = 1,
        *,
        beta: float = 3e-4,
        mode: str = "popart",
        sigma_min: float = 1e-4,
        sigma_max: float = 1e6,
        debias: bool = True,
        init_std: float = 1.0,
    ):
        super().__init__()
        if in_features < 1 or num_tasks < 1:
            raise ValueError(
                f"PopArt needs in_features >= 1 and num_tasks >= 1, got {in_features}, {num_tasks}"
            )
        if not 0 < beta <= 1:
            raise ValueError(f"beta must be in (0, 1], got {beta}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.in_features, self.num_tasks, self.beta, self.mode = in_features, num_tasks, beta, mode
        self.sigma_min, self.sigma_max, self.debias = sigma_min, sigma_max, debias
        self.weight = nn.Parameter(torch.empty(num_tasks, in_features))
        self.bias = nn.Parameter(torch.zeros(num_tasks))
        nn.init.orthogonal_(self.weight, init_std)
        self.register_buffer("mu", torch.zeros(num_tasks))
        self.register_buffer("nu", torch.ones(num_tasks))
        self.register_buffer("count", torch.zeros(num_tasks, dtype=torch.long))

    @property
    def sigma(self) -> Tensor:
        return scale_from_moments(self.mu, self.nu, self.sigma_min, self.sigma_max)

    def _task(self, task, batch: int, device) -> Tensor:
        task = torch.as_tensor(task, dtype=torch.long, device=device)
        if task.dim() == 0:
            task = task.expand(batch)
        if task.shape != (batch,):
            raise ValueError(f"task must be an int or shape ({batch},), got {tuple(task.shape)}")
        if batch and (task.min() < 0 or task.max() >= self.num_tasks):
            raise ValueError(f"task ids must be in [0, {self.num_tasks}), got {task.min()}..{task.max()}")
        return task

    def forward(self, h: Tensor, task=0) -> Tensor:
        """Normalised outputs n(h) = W_task h + b_task, shape [B]."""
        if h.dim() != 2 or h.shape[1] != self.in_features:
            raise ValueError(f"features must be [batch, {self.in_features}], got {tuple(h.shape)}")
        task = self._task(task, h.shape[0], h.device)
        return (h * self.weight[task]).sum(-1) + self.bias[task]

    def unnormalise(self, n: Tensor, task=0) -> Tensor:
        task = self._task(task, n.shape[0], n.device)
        return self.sigma[task] * n + self.mu[task]

    def normalise(self, y: Tensor, task=0) -> Tensor:
        task = self._task(task, y.shape[0], y.device)
        return (y - self.mu[task]) / self.sigma[task]

    def value(self, h: Tensor, task=0) -> Tensor:
        """The unnormalised value σ n(h) + μ (gradients flow through n only)."""
        return self.unnormalise(self(h, task), task)

    @torch.no_grad()
    def update(self, targets: Tensor, task=0) -> None:
        """Move each seen task's (μ, ν) towards the batch moments of its targets; with mode "popart"
        rescale that task's W, b so its unnormalised outputs are unchanged. Unseen tasks are untouched."""
        if self.mode == "none":
            return
        targets = targets.detach().reshape(-1)
        if not torch.isfinite(targets).all():
            raise ValueError("PopArt.update: targets contain NaN or inf")
        task = self._task(task, targets.shape[0], targets.device)
        targets = targets.to(self.mu.dtype)
        for k in task.unique().tolist():
            y = targets[task == k]
            self.count[k] += 1
            beta = self.beta
            if self.debias:
                beta = beta / (1 - (1 - beta) ** int(self.count[k]))
            sigma = self.sigma[k]
            mu, nu = update_moments(self.mu[k], self.nu[k], y.mean(), (y * y).mean(), beta)
            new_sigma = scale_from_moments(mu, nu, self.sigma_min, self.sigma_max)
            if self.mode == "popart":
                w, b = preserve_outputs(self.weight[k], self.bias[k], self.mu[k], sigma, mu, new_sigma)
                self.weight[k] = w
                self.bias[k] = b
            self.mu[k], self.nu[k] = mu, nu

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_tasks={self.num_tasks}, beta={self.beta}, "
            f"mode={self.mode!r}, sigma_min={self.sigma_min}, debias={self.debias}"
        )
