"""Splits and metrics of papers.chem.data (no graphs: torch_geometric is not imported)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from papers.chem.data.bundled import bundled_file, read_smiles_file
from papers.chem.data.metrics import mae, pr_auc, rmse, roc_auc
from papers.chem.data.splits import murcko_scaffold, random_split, scaffold_split, stratified_split


def assert_partition(split, count: int) -> None:
    indices = split.train + split.valid + split.test
    assert sorted(indices) == list(range(count))


def test_random_split_is_seeded_and_partitions_the_indices():
    split = random_split(100, (0.8, 0.1, 0.1), seed=3)
    assert_partition(split, 100)
    assert (len(split.train), len(split.valid), len(split.test)) == (80, 10, 10)
    assert random_split(100, seed=3) == split and random_split(100, seed=4) != split
    with pytest.raises(ValueError, match="summing to 1"):
        random_split(10, (0.8, 0.3, 0.1))


# 4 benzene derivatives, 3 cyclohexanes, 2 pyridines, 1 acyclic molecule (scaffold "")
HAND_MADE = (
    "c1ccccc1O CCCC C1CCCCC1N c1ccncc1C c1ccccc1C C1CCCCC1O c1ccccc1N c1ccncc1O C1CCCCC1C c1ccccc1Cl".split()
)


def test_murcko_scaffolds():
    assert murcko_scaffold("c1ccccc1CCc1ccncc1C") == "c1ccc(CCc2ccncc2)cc1"
    assert murcko_scaffold("CCCC") == ""
    with pytest.raises(ValueError, match="unclosed ring"):
        murcko_scaffold("C1CC")


def test_scaffold_split_fills_train_then_valid_then_test_largest_scaffold_first():
    split = scaffold_split(HAND_MADE, (0.5, 0.3, 0.2))
    # capacities 5, 3, 2: benzenes (4) -> train; cyclohexanes (3) -> valid; pyridines (2) fit neither
    # train nor valid -> test; the acyclic molecule (1) still fits in train
    assert split.train == [0, 4, 6, 9, 1] and split.valid == [2, 5, 8] and split.test == [3, 7]


@pytest.fixture(scope="module")
def nci_smiles_300() -> list[str]:
    rows = read_smiles_file(bundled_file("NCI", "first_5K.smi"))
    return [smiles for smiles, _ in rows[:300]]  # all 300 parse


@pytest.mark.parametrize("balanced", [False, True])
def test_scaffold_split_keeps_every_scaffold_in_one_part_and_is_deterministic(nci_smiles_300, balanced):
    split = scaffold_split(nci_smiles_300, balanced=balanced, seed=1)
    assert_partition(split, len(nci_smiles_300))
    scaffolds = [{murcko_scaffold(nci_smiles_300[i]) for i in part} for part in split]
    for first, second in itertools.combinations(scaffolds, 2):
        assert not first & second
    assert scaffold_split(nci_smiles_300, balanced=balanced, seed=1) == split
    assert len(split.train) <= 0.8 * 300 and len(split.train) + len(split.valid) <= 0.9 * 300


def test_balanced_scaffold_split_depends_on_the_seed(nci_smiles_300):
    splits = {tuple(scaffold_split(nci_smiles_300, balanced=True, seed=seed).test) for seed in range(3)}
    assert len(splits) > 1


def test_stratified_split_keeps_the_class_ratios():
    labels = torch.tensor([1.0] * 30 + [0.0] * 70)[
        torch.randperm(100, generator=torch.Generator().manual_seed(0))
    ]
    split = stratified_split(labels, (0.8, 0.1, 0.1), seed=0)
    assert_partition(split, 100)
    positives = [int(labels[part].sum()) for part in split]
    assert [len(part) for part in split] == [80, 10, 10] and positives == [24, 3, 3]
    assert stratified_split(labels, seed=0) == split and stratified_split(labels, seed=1) != split


def test_binned_stratified_split_spreads_a_regression_target():
    values = torch.linspace(0, 1, 200) ** 3
    split = stratified_split(values, (0.5, 0.25, 0.25), num_bins=4, seed=0)
    assert_partition(split, 200)
    for part in split:  # each part holds a quarter of its molecules in each quartile
        quartiles = torch.bucketize(values[part], values.quantile(torch.tensor([0.25, 0.5, 0.75])))
        assert quartiles.bincount(minlength=4).tolist() == [len(part) // 4] * 4
    with pytest.raises(ValueError, match="NaN"):
        stratified_split([0.0, float("nan")])


def test_regression_metrics_mask_missing_labels_and_average_tasks():
    pred = torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, 5.0]])
    target = torch.tensor([[1.0, float("nan")], [4.0, 1.0], [3.0, 1.0]])
    assert rmse(pred[:, 0], target[:, 0]) == pytest.approx(math.sqrt(4 / 3))
    assert mae(pred, target, reduction="none").tolist() == pytest.approx([2 / 3, 2.0])
    assert rmse(pred, target) == pytest.approx((math.sqrt(4 / 3) + math.sqrt(8)) / 2)
    mask = torch.tensor([[True, True], [False, True], [True, True]])
    assert mae(pred, target, mask=mask, reduction="none").tolist() == pytest.approx([0.0, 2.0])
    with pytest.raises(ValueError, match="same shape"):
        rmse(pred, target[:, 0])


def test_roc_auc_and_average_precision_against_hand_computed_values():
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert roc_auc(scores, labels) == pytest.approx(0.75)
    # thresholds 0.8, 0.4, 0.35, 0.1: recall 1/2 at precision 1, then 1 at precision 2/3
    assert pr_auc(scores, labels) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_ties_count_one_half_and_form_one_threshold():
    scores, labels = [0.9, 0.5, 0.5, 0.5, 0.1], [1, 1, 0, 0, 1]
    # positive-negative pairs: 0.9 beats both (2), 0.5 ties both (2 x 1/2), 0.1 beats none: 3 of 6
    assert roc_auc(scores, labels) == pytest.approx(0.5)
    # threshold 0.9: P 1, R 1/3; threshold 0.5: P 2/4, R 2/3; threshold 0.1: P 3/5, R 1
    assert pr_auc(scores, labels) == pytest.approx((1 + 0.5 + 0.6) / 3)


def test_roc_auc_equals_the_pairwise_count_and_ignores_monotone_transforms():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (60,), generator=generator).double()  # many ties
    labels = (torch.rand(60, generator=generator) < 0.4).double()
    positive, negative = scores[labels == 1], scores[labels == 0]
    difference = positive[:, None] - negative[None, :]
    pairwise = ((difference > 0).double() + 0.5 * (difference == 0).double()).mean().item()
    assert roc_auc(scores, labels) == pytest.approx(pairwise)
    assert roc_auc(torch.sigmoid(scores - 2), labels) == pytest.approx(pairwise)
    assert pr_auc(torch.sigmoid(scores - 2), labels) == pytest.approx(pr_auc(scores, labels))


def test_a_single_class_task_is_nan_and_skipped_and_alone_is_an_error():
    scores = torch.tensor([[0.2, 0.9], [0.8, 0.1], [0.5, 0.7]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, float("nan")]])
    per_task = roc_auc(scores, labels, reduction="none")
    assert math.isnan(per_task[0]) and per_task[1].item() == pytest.approx(0.0)
    assert roc_auc(scores, labels) == pytest.approx(0.0)  # the mean skips the undefined task
    with pytest.raises(ValueError, match="undefined for every task"):
        roc_auc([0.2, 0.8], [1, 1])
    with pytest.raises(ValueError, match="undefined for every task"):
        pr_auc([0.2, 0.8], [0, 0])
    with pytest.raises(ValueError, match="0 or 1"):
        roc_auc([0.2, 0.8], [0, 2])
