"""Reproduction of the paper's two experiments on generated data.

(a) Linear SEM (Sec. 5.1): ``ChainSEM`` with d = 10, 1,000 samples per environment, training
    environments e ∈ {0.2, 2}, e = 5 held out to choose the IRM weight ``reg`` from the paper's grid
    (the paper's protocol; ERM is least squares on all three). Causal and non-causal coefficient errors
    (mean squared error to the invariant vector, on the coefficients of the unscrambled Z1 and Z2) of
    ERM and IRM, per setup: F/P = fully/partially
    observed (hidden confounder), O/E = homo-/heteroskedastic, U/S = unscrambled/scrambled.
(b) Coloured digits (the paper's Colored MNIST, Sec. 5.2, on generated 'digits'): a digit 0…9 has a
    fixed random prototype ('shape') in R^dim, an element is its prototype plus noise; label =
    [digit < 5] flipped with probability 0.25; colour = label flipped with probability p_e; the shape
    is written into the colour's channel of a two-channel input, the other channel is zero. Train
    p_e ∈ {0.2, 0.1}, test p_e = 0.9. The paper's MLP and hyperparameters: ERM vs IRMv1 (penalty weight
    1 for the first ``anneal_steps`` steps, then the full weight with the loss divided by it) vs ERM on
    the channel sum (the oracle, which cannot see the colour).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result
from papers.core.plots import figure

from .model import (
    ChainSEM,
    ColoredMLP,
    coefficient_errors,
    erm_linear,
    irm_linear,
    irm_penalty,
    logistic_loss,
)

SETUPS = ("FOU", "FOS", "FEU", "FES", "POU", "POS", "PEU", "PES")


@dataclass
class Config:
    # (a) linear SEM
    dim: int = 10
    n_samples: int = 1000
    train_envs: tuple[float, ...] = (0.2, 2.0)
    validation_env: float = 5.0
    regs: tuple[float, ...] = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    setups: tuple[str, ...] = ("FOU", "FEU", "POU", "PEU")
    repetitions: int = 2
    linear_steps: int = 1500  # the paper: 100,000 at lr 1e-3
    linear_lr: float = 1e-2
    # (b) coloured digits
    channel_dim: int = 16
    digit_noise: float = 0.5
    label_noise: float = 0.25
    train_color_flips: tuple[float, ...] = (0.2, 0.1)
    test_color_flip: float = 0.9
    n_per_env: int = 1000
    hidden: int = 64  # the paper: 390
    lr: float = 0.0004898536566546834
    l2: float = 0.00110794568
    penalty_weight: float = 91257.18613115903
    anneal_steps: int = 190
    steps: int = 501
    restarts: int = 2
    unbiased_penalty: bool = False
    threads: int = 1  # torch CPU threads set by run (0 keeps the process setting)

    def validate(self) -> None:
        for name in ("n_samples", "repetitions", "linear_steps", "channel_dim", "n_per_env", "hidden",
                     "steps", "restarts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.dim < 2 or self.dim % 2:
            raise ValueError(f"dim must be an even number >= 2, got {self.dim}")
        if not self.train_envs or min(self.train_envs) <= 0 or not self.validation_env > 0:
            raise ValueError(f"environment noise scales must be > 0, got {self.train_envs}, "
                             f"{self.validation_env}")
        if not self.regs or not all(0 <= r <= 1 for r in self.regs):
            raise ValueError(f"regs must be values in [0, 1], got {self.regs}")
        if not self.setups or not set(self.setups) <= set(SETUPS):
            raise ValueError(f"setups must be values from {SETUPS}, got {self.setups}")
        flips = (*self.train_color_flips, self.test_color_flip, self.label_noise)
        if len(self.train_color_flips) < 2 or not all(0 <= p <= 1 for p in flips):
            raise ValueError("train_color_flips needs at least two environments, and train_color_flips, "
                             f"test_color_flip and label_noise must lie in [0, 1], got {flips}")
        for name in ("linear_lr", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("l2", "penalty_weight", "digit_noise"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.anneal_steps <= self.steps:
            raise ValueError(f"anneal_steps must lie in [0, steps], got {self.anneal_steps}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"n_samples": 50, "setups": ("FEU", "POS"), "repetitions": 1, "regs": (0.0, 1e-1),
              "linear_steps": 5, "channel_dim": 4, "n_per_env": 64, "hidden": 8, "steps": 8,
              "anneal_steps": 4, "restarts": 1},
    "default": {},
    "full": {"setups": SETUPS, "repetitions": 10, "linear_steps": 100_000, "linear_lr": 1e-3,
             "n_per_env": 25_000, "hidden": 390, "restarts": 10},
}


# ---------- (a) linear SEM ----------


def make_sem(setup: str, dim: int, generator: torch.Generator) -> ChainSEM:
    return ChainSEM(dim, hidden=setup[0] == "P", hetero=setup[1] == "E", scramble=setup[2] == "S",
                    generator=generator)


def linear_sem(config: Config, ctx) -> dict:
    """All setups × repetitions × regs solved together; the reg with the lowest validation error wins."""
    generator = torch.Generator().manual_seed(ctx.seed)
    problems = []
    for setup in config.setups:
        for _ in range(config.repetitions):
            sem = make_sem(setup, config.dim, generator)
            train = [sem.sample(config.n_samples, e, generator) for e in config.train_envs]
            validation = sem.sample(config.n_samples, config.validation_env, generator)
            problems.append((setup, sem, train, validation))
    regs = torch.tensor(config.regs)
    x = torch.stack([torch.stack([x for x, _ in p[2]]) for p in problems])
    y = torch.stack([torch.stack([y for _, y in p[2]]) for p in problems])
    n_regs = len(regs)
    with ctx.progress_bar(None, f"linear IRM ({len(problems) * n_regs} problems)"):
        solutions = irm_linear(x.repeat_interleave(n_regs, 0), y.repeat_interleave(n_regs, 0),
                               regs.repeat(len(problems)), steps=config.linear_steps, lr=config.linear_lr)
    rows = []
    for i, (setup, sem, train, (x_val, y_val)) in enumerate(problems):
        candidates = solutions[i * n_regs:(i + 1) * n_regs]
        validation_error = (x_val @ candidates.T - y_val).pow(2).mean(0)
        best = int(validation_error.argmin())
        irm = candidates[best]
        erm = erm_linear([*train, (x_val, y_val)])
        truth = sem.solution()
        s, causal = sem.scramble, sem.causal_mask()  # x β = z (S β): errors on the coefficients of Z1, Z2
        erm_causal, erm_noncausal = coefficient_errors(s @ truth, s @ erm, causal)
        irm_causal, irm_noncausal = coefficient_errors(s @ truth, s @ irm, causal)
        rows.append({"setup": setup, "reg": config.regs[best], "erm_causal": erm_causal,
                     "erm_noncausal": erm_noncausal, "irm_causal": irm_causal, "irm_noncausal": irm_noncausal,
                     "erm": erm.tolist(), "irm": irm.tolist(), "truth": truth.tolist()})
    return {"rows": rows}


# ---------- (b) coloured digits ----------


def colored_digits(n: int, color_flip: float, prototypes: Tensor, config: Config,
                   generator: torch.Generator) -> dict[str, Tensor]:
    """One environment: inputs [n, 2·dim] (the shape in the colour's channel), labels [n, 1] in {0, 1}."""
    digits = torch.randint(len(prototypes), (n,), generator=generator)
    shape = prototypes[digits] + config.digit_noise * torch.randn(n, prototypes.shape[1], generator=generator)
    label = (digits < len(prototypes) // 2).float()
    label = (label - (torch.rand(n, generator=generator) < config.label_noise).float()).abs()
    color = (label - (torch.rand(n, generator=generator) < color_flip).float()).abs()
    x = torch.cat([shape * (color == 0)[:, None], shape * (color == 1)[:, None]], dim=1)
    return {"x": x, "y": label[:, None], "color": color}


def accuracy(logits: Tensor, y: Tensor) -> float:
    return ((logits > 0).float() == y).float().mean().item()


def train_colored(arm: str, envs: list[dict], test: dict, config: Config, seed: int, ctx) -> dict:
    """The paper's training loop: full batches of every training environment, Adam, L2 on the weights;
    IRM adds the penalty, weight 1 before ``anneal_steps`` and ``penalty_weight`` after (loss divided)."""
    torch.manual_seed(seed)
    model = ColoredMLP(config.channel_dim, config.hidden, grayscale=arm == "oracle")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    curve = []
    for step in range(config.steps):
        logits = [model(e["x"]) for e in envs]
        nll = torch.stack([logistic_loss(f, e["y"]) for f, e in zip(logits, envs, strict=True)]).mean()
        penalty = torch.stack([irm_penalty(f, e["y"], logistic_loss, unbiased=config.unbiased_penalty)
                               for f, e in zip(logits, envs, strict=True)]).mean()
        weight_norm = sum(w.pow(2).sum() for w in model.parameters())
        loss = nll + config.l2 * weight_norm
        if arm == "irm":
            penalty_weight = config.penalty_weight if step >= config.anneal_steps else 1.0
            loss = loss + penalty_weight * penalty
            if penalty_weight > 1.0:
                loss = loss / penalty_weight
        if not torch.isfinite(loss):
            raise PapersError(f"{arm}: non-finite loss at step {step}")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 0 or step == config.steps - 1:
            with torch.no_grad():
                test_acc = accuracy(model(test["x"]), test["y"])
            train_acc = sum(accuracy(model(e["x"]), e["y"]) for e in envs) / len(envs)
            curve.append({"step": step, "train_accuracy": train_acc, "test_accuracy": test_acc,
                          "penalty": penalty.item()})
            ctx.log({f"{arm}_nll": nll.item(), f"{arm}_penalty": penalty.item(), f"{arm}_test_acc": test_acc},
                    step=step)
    return {"train_accuracy": curve[-1]["train_accuracy"], "test_accuracy": curve[-1]["test_accuracy"],
            "penalty": curve[-1]["penalty"], "curve": curve}


def coloured_digits(config: Config, ctx) -> dict:
    out: dict[str, list] = {"erm": [], "irm": [], "oracle": []}
    with ctx.progress_bar(config.restarts * len(out), "coloured digits") as bar:
        for restart in range(config.restarts):
            generator = torch.Generator().manual_seed(ctx.seed + 100 + restart)
            prototypes = torch.randn(10, config.channel_dim, generator=generator)
            envs = [colored_digits(config.n_per_env, p, prototypes, config, generator)
                    for p in config.train_color_flips]
            test = colored_digits(config.n_per_env, config.test_color_flip, prototypes, config, generator)
            for arm in out:
                out[arm].append(train_colored(arm, envs, test, config, ctx.seed + restart, ctx))
                bar.update(1)
    return out


# ---------- run ----------


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    linear = ctx.stage("linear_sem", lambda: linear_sem(config, ctx))
    colored = ctx.stage("coloured_digits", lambda: coloured_digits(config, ctx))

    per_setup = {}
    for setup in config.setups:
        rows = [r for r in linear["rows"] if r["setup"] == setup]
        per_setup[setup] = {key: _mean(r[key] for r in rows)
                            for key in ("erm_causal", "erm_noncausal", "irm_causal", "irm_noncausal")}
    fig, (ax,) = figure(width=6.5)
    positions = range(len(config.setups))
    for offset, (key, label) in enumerate([("erm_causal", "ERM causal"), ("irm_causal", "IRM causal"),
                                           ("erm_noncausal", "ERM non-causal"),
                                           ("irm_noncausal", "IRM non-causal")]):
        ax.bar([p + 0.2 * offset - 0.3 for p in positions], [per_setup[s][key] for s in config.setups],
               width=0.2, label=label)
    ax.set(xticks=list(positions), xticklabels=list(config.setups), yscale="log",
           ylabel="coefficient MSE", title="linear SEM (F/P observed, O/E homo/hetero, U/S scrambled)")
    ax.legend(fontsize=7)
    ctx.save_figure(fig, "linear_sem")

    fig, (ax,) = figure(width=5.5)
    for arm in ("erm", "irm", "oracle"):
        curve = colored[arm][0]["curve"]
        line, = ax.plot([c["step"] for c in curve], [c["test_accuracy"] for c in curve], label=f"{arm} test")
        ax.plot([c["step"] for c in curve], [c["train_accuracy"] for c in curve], ls=":",
                color=line.get_color(), label=f"{arm} train")
    ax.axvline(config.anneal_steps, color="grey", ls="--", lw=0.8)
    ax.axhline(0.5, color="black", lw=0.6)
    ax.set(xlabel="step", ylabel="accuracy", title="coloured digits (restart 0; dashed: penalty ramps up)")
    ax.legend(fontsize=7)
    ctx.save_figure(fig, "coloured_digits")

    acc = {arm: {split: _mean(r[f"{split}_accuracy"] for r in colored[arm]) for split in ("train", "test")}
           for arm in colored}
    metrics = {f"{setup}_{key}": value
               for setup, values in per_setup.items() for key, value in values.items()}
    metrics |= {f"{arm}_{split}_accuracy": acc[arm][split] for arm in acc for split in ("train", "test")}
    metrics["irm_final_penalty"] = _mean(r["penalty"] for r in colored["irm"])
    metrics["erm_final_penalty"] = _mean(r["penalty"] for r in colored["erm"])
    metrics["linear_rows"] = [{k: v for k, v in r.items() if k not in ("erm", "irm", "truth")}
                              for r in linear["rows"]]

    checks = []
    for setup, values in per_setup.items():
        checks.append(Check(f"(a) {setup}: IRM's non-causal coefficient error is below ERM's",
                            values["irm_noncausal"], "<", values["erm_noncausal"], "ERM non-causal error"))
        checks.append(Check(f"(a) {setup}: IRM's causal coefficient error is below ERM's",
                            values["irm_causal"], "<", values["erm_causal"], "ERM causal error"))
    checks += [
        Check("(b) IRM beats ERM in the colour-flipped test environment", acc["irm"]["test"], ">",
              acc["erm"]["test"], "ERM test accuracy"),
        Check("(b) IRM is better than chance in the test environment", acc["irm"]["test"], ">", 0.5,
              "chance (paper: random guessing)"),
        Check("(b) ERM is worse than chance in the test environment", acc["erm"]["test"], "<", 0.5,
              "chance (paper: ERM below random guessing)"),
    ]
    regs = [r["reg"] for r in linear["rows"]]
    notes = (f"(a) reg chosen on the e={config.validation_env} environment: {regs} "
             f"({config.linear_steps} Adam steps at lr {config.linear_lr}; the paper ran 100,000 at 1e-3). "
             f"(b) accuracies train/test: ERM {acc['erm']['train']:.3f}/{acc['erm']['test']:.3f}, "
             f"IRM {acc['irm']['train']:.3f}/{acc['irm']['test']:.3f}, oracle "
             f"{acc['oracle']['train']:.3f}/{acc['oracle']['test']:.3f} "
             f"(paper, Colored MNIST: ERM 87.4/17.1, IRM 70.8/66.9, oracle 73.5/73.0), "
             f"mean over {config.restarts} restarts.")
    return Result(metrics=metrics, checks=checks, notes=notes)
