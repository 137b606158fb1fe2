"""REINVENT: the SMILES RNN (likelihood = sum of per-step log-softmax, masks, seeded sampling, prefix
continuation, likelihood training), the augmented-likelihood and REINFORCE losses, the paper's scores,
bad input, and a deterministic smoke run."""

from __future__ import annotations

import json

import pytest
import torch
from papers_testing import untimed
from torch.nn import functional as F

from papers.chem.reinvent import (
    END_ID,
    PAD_ID,
    START_ID,
    SmilesRNN,
    augmented_likelihood_loss,
    fit_likelihood,
    reinforce_loss,
    sequence_mask,
)


def _model(vocab_size: int = 9, seed: int = 0) -> SmilesRNN:
    torch.manual_seed(seed)
    return SmilesRNN(vocab_size, embedding=8, hidden=16, layers=2)


def test_sequence_mask_counts_up_to_and_including_the_first_end():
    tokens = torch.tensor([[5, 6, END_ID, PAD_ID, PAD_ID], [5, END_ID, 7, END_ID, 4], [5, 6, 7, 8, 4]])
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.float)
    assert torch.equal(sequence_mask(tokens), expected)


def test_log_likelihood_is_the_sum_of_per_step_log_softmax_on_samples():
    model = _model()
    tokens = model.sample(6, 12, generator=torch.Generator().manual_seed(3))
    assert tokens.shape == (6, 12)
    assert not ((tokens == START_ID).any() or (sequence_mask(tokens).bool() & (tokens == PAD_ID)).any())
    ll = model.log_likelihood(tokens)
    assert ll.shape == (6,)
    with torch.no_grad():
        for b in range(6):
            state, inp, total = None, torch.tensor([[START_ID]]), 0.0
            for t in range(12):
                logits, state = model(inp, state)
                step = logits[0, -1].clone()
                step[[PAD_ID, START_ID]] = float("-inf")  # never emitted
                total += F.log_softmax(step, dim=-1)[tokens[b, t]].item()
                if tokens[b, t] == END_ID:
                    break
                inp = tokens[b, t].view(1, 1)
            assert ll[b].item() == pytest.approx(total, abs=1e-4)
    # pads after </s> do not change the likelihood
    assert torch.allclose(model.log_likelihood(torch.cat([tokens, tokens[:, :3] * 0], dim=1)), ll, atol=1e-5)


def test_sampling_is_deterministic_under_a_generator_and_pads_after_end():
    model = _model()
    a = model.sample(8, 15, generator=torch.Generator().manual_seed(11))
    b = model.sample(8, 15, generator=torch.Generator().manual_seed(11))
    c = model.sample(8, 15, generator=torch.Generator().manual_seed(12))
    assert torch.equal(a, b) and not torch.equal(a, c)
    for row in a.tolist():
        if END_ID in row:
            assert all(t == PAD_ID for t in row[row.index(END_ID) + 1 :])


def test_prefix_continuation_keeps_the_prefix_and_matches_its_conditional():
    model = _model()
    prefix = torch.tensor([[5, 6, 7]] * 4)
    out = model.sample(4, 10, generator=torch.Generator().manual_seed(0), prefix=prefix)
    assert torch.equal(out[:, :3], prefix)
    # the first free token is drawn from p(· | prefix): compare with a direct draw, same generator
    with torch.no_grad():
        logits, _ = model(torch.cat([torch.full((4, 1), START_ID), prefix], dim=1))
    direct = torch.multinomial(
        F.softmax(logits[:, -1], dim=-1), 1, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(out[:, 3], direct.squeeze(1))
    ended = model.sample(
        2, 6, prefix=torch.tensor([[5, END_ID], [5, 6]]), generator=torch.Generator().manual_seed(0)
    )
    assert ended[0, 2:].eq(PAD_ID).all()


def test_fit_likelihood_lowers_the_nll_of_the_corpus():
    vocab = ["CCO", "c1ccccc1", "CC(=O)O", "CCN"]
    from papers.chem.data import Vocabulary

    v = Vocabulary.from_smiles(vocab)
    tokens = torch.tensor([v.encode(s, 10) for s in vocab])
    model = _model(len(v))
    before = -model.log_likelihood(tokens).mean().item()
    losses = fit_likelihood(
        model, tokens, steps=60, batch_size=4, lr=1e-2, generator=torch.Generator().manual_seed(0)
    )
    after = -model.log_likelihood(tokens).mean().item()
    assert len(losses) == 60 and after < 0.5 * before


def test_bad_shapes_and_ids_raise():
    model = _model()
    with pytest.raises(ValueError, match="LongTensor"):
        model.log_likelihood(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids"):
        model.log_likelihood(torch.tensor([[3, 99]]))
    with pytest.raises(ValueError, match="prefix"):
        model.sample(2, 5, prefix=torch.tensor([[3, 4]]))
    with pytest.raises(ValueError, match="vocab_size"):
        SmilesRNN(2)
    with pytest.raises(ValueError, match="1-D"):
        augmented_likelihood_loss(torch.zeros(3), torch.zeros(3), torch.zeros(4), 2.0)
    with pytest.raises(ValueError, match="sigma"):
        augmented_likelihood_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), -1.0)
    with pytest.raises(ValueError, match="1-D"):
        reinforce_loss(torch.zeros(2, 2), torch.zeros(2, 2))


def test_augmented_likelihood_loss_value_gradient_and_fixed_point():
    agent_ll = torch.tensor([-10.0, -20.0], requires_grad=True)
    prior_ll = torch.tensor([-12.0, -18.0], requires_grad=True)
    score = torch.tensor([1.0, -1.0])
    loss = augmented_likelihood_loss(agent_ll, prior_ll, score, sigma=2.0)
    # targets -10 and -20: the agent already sits on the augmented likelihood
    assert loss.item() == 0.0
    loss = augmented_likelihood_loss(agent_ll, prior_ll, score, sigma=4.0)  # targets -8, -22
    assert loss.item() == pytest.approx((4 + 4) / 2)
    loss.backward()
    assert torch.allclose(agent_ll.grad, torch.tensor([-2.0, 2.0]))  # d/dx mean (t − x)² = −(t − x)
    assert prior_ll.grad is None  # the prior is a fixed target
    # REINFORCE: gradient −S / B on log P_agent
    a = torch.tensor([-3.0, -4.0], requires_grad=True)
    reinforce_loss(a, torch.tensor([1.0, -1.0])).backward()
    assert torch.allclose(a.grad, torch.tensor([-0.5, 0.5]))


def test_reinvent_step_moves_the_agent_towards_the_augmented_likelihood():
    model = _model()
    prior = _model()
    tokens = model.sample(16, 10, generator=torch.Generator().manual_seed(1))
    score = torch.linspace(-1, 1, 16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    with torch.no_grad():
        prior_ll = prior.log_likelihood(tokens)
    first = None
    for _ in range(20):
        loss = augmented_likelihood_loss(model.log_likelihood(tokens), prior_ll, score, sigma=3.0)
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first == pytest.approx(9.0 * score.pow(2).mean().item(), rel=1e-4)  # agent = prior at start
    assert loss.item() < 0.5 * first


def test_the_papers_scores():
    from papers.chem.reinvent.experiment import (
        CELECOXIB,
        count_jaccard,
        fingerprint,
        similarity_score,
        sulphur_score,
    )

    assert sulphur_score(["CCO", "CCS", "C1CC", "", "c1ccsc1", "O=S(=O)(O)O"]) == [
        1.0,
        -1.0,
        0.0,
        0.0,
        -1.0,
        -1.0,
    ]
    assert count_jaccard({1: 2, 2: 1}, {1: 1, 3: 1}) == pytest.approx(1 / 4)  # min 1 / max (2+1+1)
    assert count_jaccard({}, {}) == 1.0
    target = fingerprint(CELECOXIB)
    assert all(isinstance(v, int) and v >= 1 for v in target.values())
    scores, sims = similarity_score([CELECOXIB, "CCO", "C1CC"], target, k=0.7)
    assert sims[0] == 1.0 and scores[0] == 1.0  # capped at k: the target itself scores 1
    assert 0 <= sims[1] < 0.2 and scores[1] == pytest.approx(-1 + 2 * sims[1] / 0.7)
    assert scores[2] == 0.0 and sims[2] != sims[2]  # invalid: score 0, similarity NaN
    with pytest.raises(ValueError, match="invalid SMILES"):
        fingerprint("C1CC(")
    with pytest.raises(ValueError, match="k must be"):
        similarity_score(["CCO"], target, k=0.0)


def test_decode_counts_unfinished_sequences_as_empty_and_unique_rows():
    from papers.chem.data import Vocabulary
    from papers.chem.reinvent.experiment import decode, first_unique

    v = Vocabulary.from_smiles(["CCO"])
    c, o = v.index["C"], v.index["O"]
    tokens = torch.tensor([[c, o, END_ID, PAD_ID], [c, c, c, c], [c, o, END_ID, PAD_ID]])
    assert decode(v, tokens) == ["CO", "", "CO"]
    assert first_unique(tokens).tolist() == [0, 1]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"agent_steps": 0}, "agent_steps must be >= 1"),
        ({"agent_lr": 0.0}, "agent_lr must be > 0"),
        ({"sigma_sulphur": -1.0}, "sigma_sulphur must be >= 0"),
        ({"k": 1.5}, "k must be in"),
        ({"remove_similar": 0.0}, "remove_similar"),
        ({"target": "C1CC("}, "invalid SMILES"),
        ({"prior_steps": -1}, "prior_steps"),
    ],
)
def test_bad_config_values(override, message):
    from papers.chem.reinvent.experiment import Config

    with pytest.raises(ValueError, match=message):
        Config(**override).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.chem.reinvent import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert json.dumps(untimed(result.metrics)) == json.dumps(untimed(again.metrics))
    assert len(result.checks) == 7
    assert sorted(result.figures) == ["figures/agents.png", "figures/prior.png"]
    stages = {p.stem for p in (run_dir / "stages").glob("*.json")}
    assert stages == {
        "data",
        "prior",
        "prior_eval",
        "sulphur_reinvent",
        "sulphur_reinforce",
        "similarity_reinvent",
        "similarity_reinforce",
    }
    for model in ("prior", "reinvent", "reinforce"):
        assert 0 <= result.metrics[f"sulphur_{model}_validity"] <= 1
