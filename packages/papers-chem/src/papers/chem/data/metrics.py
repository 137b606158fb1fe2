"""Regression and classification metrics with masks for missing labels, averaged over tasks.

Every metric takes ``pred`` and ``target`` of shape ``[N]`` or ``[N, num_tasks]`` (tensors, arrays or
lists) and an optional boolean ``mask`` of the same shape (True = the label is present; default: the
target is not NaN). Each task is scored on its own labelled rows; ``reduction="mean"`` averages the
tasks (MoleculeNet's convention), ``reduction="none"`` returns one value per task.

    rmse      sqrt(mean((pred - target)^2))
    mae       mean(|pred - target|)
    roc_auc   area under the ROC curve = P(score of a random positive > score of a random negative),
              ties counted one half (the Mann-Whitney U statistic from average ranks)
    pr_auc    average precision: sum over score thresholds t (descending) of
              (recall(t) - recall(previous t)) * precision(t), a group of tied scores being one threshold

Classification scores may be probabilities or logits (only their order matters); targets are 0/1.
A task is NaN when it has no labelled rows, or, for ``roc_auc`` and ``pr_auc``, when its labels are a
single class (the metric is undefined there). The mean skips NaN tasks, and raises ``ValueError`` when
every task is NaN, so a single-task metric on one class is an error rather than a silent number.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _as_columns(pred, target, mask) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pred = torch.as_tensor(pred, dtype=torch.float64)
    target = torch.as_tensor(target, dtype=torch.float64)
    if pred.shape != target.shape or pred.dim() not in (1, 2):
        raise ValueError(
            f"pred and target must have the same shape [N] or [N, tasks], got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    present = ~target.isnan()
    if mask is not None:
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.shape != target.shape:
            raise ValueError(
                f"mask must have the shape of target {tuple(target.shape)}, got {tuple(mask.shape)}"
            )
        present &= mask
    if pred[present].isnan().any():
        raise ValueError("pred contains NaN where a label is present")
    if pred.dim() == 1:
        return pred[:, None], target[:, None], present[:, None]
    return pred, target, present


def _per_task(
    score: Callable[[torch.Tensor, torch.Tensor], float], pred, target, mask, reduction: str
) -> float | torch.Tensor:
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    pred, target, present = _as_columns(pred, target, mask)
    values = torch.tensor(
        [
            score(pred[present[:, task], task], target[present[:, task], task])
            if present[:, task].any()
            else float("nan")
            for task in range(target.shape[1])
        ],
        dtype=torch.float64,
    )
    if reduction == "none":
        return values
    defined = values[~values.isnan()]
    if len(defined) == 0:
        raise ValueError(
            "the metric is undefined for every task (no labelled rows, or labels of a single class)"
        )
    return defined.mean().item()


def _check_binary(target: torch.Tensor) -> torch.Tensor:
    if not ((target == 0) | (target == 1)).all():
        raise ValueError("classification targets must be 0 or 1")
    return target == 1


def _rmse(pred: torch.Tensor, target: torch.Tensor) -> float:
    return (pred - target).square().mean().sqrt().item()


def _mae(pred: torch.Tensor, target: torch.Tensor) -> float:
    return (pred - target).abs().mean().item()


def _roc_auc(scores: torch.Tensor, target: torch.Tensor) -> float:
    positive = _check_binary(target)
    num_positive, num_negative = int(positive.sum()), int((~positive).sum())
    if num_positive == 0 or num_negative == 0:
        return float("nan")
    _, group, group_sizes = torch.unique(scores, return_inverse=True, return_counts=True)
    average_rank = group_sizes.cumsum(0) - (group_sizes - 1) / 2  # 1-based ranks, ties share their mean
    positive_rank_sum = average_rank[group][positive].sum().item()
    return (positive_rank_sum - num_positive * (num_positive + 1) / 2) / (num_positive * num_negative)


def _average_precision(scores: torch.Tensor, target: torch.Tensor) -> float:
    positive = _check_binary(target)
    num_positive = int(positive.sum())
    if num_positive == 0 or num_positive == len(positive):
        return float("nan")
    thresholds, group = torch.unique(scores, return_inverse=True)
    # counts per distinct score, highest score first
    positives_at = torch.bincount(group, weights=positive.double(), minlength=len(thresholds)).flip(0)
    predicted_at = torch.bincount(group, minlength=len(thresholds)).flip(0).double()
    true_positives = positives_at.cumsum(0)
    precision = true_positives / predicted_at.cumsum(0)
    recall = true_positives / num_positive
    recall_gain = torch.diff(recall, prepend=recall.new_zeros(1))
    return (recall_gain * precision).sum().item()


def rmse(pred, target, mask=None, reduction: str = "mean") -> float | torch.Tensor:
    """Root-mean-square error per task (see the module docstring)."""
    return _per_task(_rmse, pred, target, mask, reduction)


def mae(pred, target, mask=None, reduction: str = "mean") -> float | torch.Tensor:
    """Mean absolute error per task (see the module docstring)."""
    return _per_task(_mae, pred, target, mask, reduction)


def roc_auc(scores, target, mask=None, reduction: str = "mean") -> float | torch.Tensor:
    """Area under the ROC curve per task, ties counted one half (see the module docstring)."""
    return _per_task(_roc_auc, scores, target, mask, reduction)


def pr_auc(scores, target, mask=None, reduction: str = "mean") -> float | torch.Tensor:
    """Average precision (area under the precision-recall curve) per task (see the module docstring)."""
    return _per_task(_average_precision, scores, target, mask, reduction)
