"""Reproduction (toy scale): VQ-VAE on scikit-learn's digits upsampled to 16 × 16 (van den Oord et al.
2017, Sec. 4.1-4.2 and Appendix A.1).

Data: the 1,797 digits, bilinearly upsampled from 8 × 8 to 16 × 16, split 80 / 20 (stratified, seeded).

Models, trained alike (Adam, same seed, batches and number of steps; the encoder downsamples by 4, so
every image becomes a 4 × 4 grid of latents):
  vq       VQ-VAE with the codebook loss: MSE / Var(x) + ||sg(z_e) − e||² + β ||z_e − sg(e)||²
  vq_ema   VQ-VAE with EMA codebook updates (γ = 0.99, ε = 1e-5): MSE / Var(x) + β ||z_e − sg(e)||²
  vae      Gaussian VAE with the same encoder / decoder and a continuous (D, 4, 4) latent, N(0, I) prior,
           decoder variance at its maximum-likelihood value (the batch MSE); trained on the negative
           ELBO, reconstructed from the posterior mean
Then a causal transformer prior (dropout and weight decay, as the 1,437 training grids are few) is
fitted to the codes of the training images (of ``prior_on``), and codes sampled from it are decoded.

Measured: test reconstruction MSE (pixels in [0, 1]) of the three models; codebook perplexity
exp(H(code usage)) on the test set, at initialisation and after training, and the number of codes in
use; the prior's test negative log-likelihood in bits per code against a uniform prior (log2 K) and an
i.i.d. prior with the training code frequencies; and, as a crude sample-quality number, the mean
distance (MSE) from each decoded sample to its nearest test image, for the prior's samples and for
codes drawn i.i.d. from the training frequencies.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result
from papers.vision.data import batches, load_digits, stratified_split

from .model import VQVAE, CodePrior, GaussianVAE, code_counts, n_params, perplexity, perplexity_of_counts

VQ_MODELS = ("vq", "vq_ema")
LABELS = {"vq": "VQ-VAE (codebook loss)", "vq_ema": "VQ-VAE (EMA)", "vae": "Gaussian VAE"}


@dataclass
class Config:
    size: int = 16
    test_fraction: float = 0.2
    num_codes: int = 32  # K
    code_dim: int = 16  # D (also the VAE's latent channels)
    hidden: int = 32
    beta: float = 0.25
    decay: float = 0.99
    epsilon: float = 1e-5
    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    prior_on: str = "vq_ema"
    prior_steps: int = 600
    prior_width: int = 64
    prior_layers: int = 2
    prior_heads: int = 4
    prior_dropout: float = 0.2
    prior_weight_decay: float = 0.01
    prior_lr: float = 1e-3
    samples: int = 64
    log_every: int = 25
    # torch CPU threads set by run (0 keeps the process setting)
    threads: int = 1

    def validate(self) -> None:
        if self.size < 4 or self.size % 4:
            raise ValueError(f"size must be a multiple of 4 (>= 4), got {self.size}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        for name in (
            "num_codes",
            "code_dim",
            "hidden",
            "steps",
            "batch_size",
            "prior_steps",
            "prior_width",
            "prior_layers",
            "prior_heads",
            "samples",
            "log_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_codes < 2:
            raise ValueError(f"num_codes must be >= 2, got {self.num_codes}")
        if self.prior_width % self.prior_heads:
            raise ValueError(
                f"prior_width must be divisible by prior_heads, got {self.prior_width}, {self.prior_heads}"
            )
        if not 0.0 <= self.prior_dropout < 1.0:
            raise ValueError(f"prior_dropout must be in [0, 1), got {self.prior_dropout}")
        if self.prior_weight_decay < 0:
            raise ValueError(f"prior_weight_decay must be >= 0, got {self.prior_weight_decay}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {self.decay}")
        if self.epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {self.epsilon}")
        if not (self.lr > 0 and self.prior_lr > 0):
            raise ValueError(f"lr and prior_lr must be > 0, got {self.lr} and {self.prior_lr}")
        if self.prior_on not in VQ_MODELS:
            raise ValueError(f"prior_on must be one of {', '.join(VQ_MODELS)}, got {self.prior_on!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"size": 8, "steps": 20, "prior_steps": 20, "hidden": 8, "code_dim": 4, "num_codes": 8,
              "prior_width": 16, "prior_layers": 1, "samples": 8, "log_every": 10},
    "default": {},
    "full": {"num_codes": 64, "code_dim": 32, "hidden": 64, "steps": 6000, "prior_steps": 2000,
             "prior_width": 128, "lr": 5e-4},
}  # fmt: skip


def load_data(config: Config, seed: int) -> dict:
    digits = load_digits(size=config.size)
    train, test = stratified_split(digits.labels, config.test_fraction, seed=seed)
    images = digits.images.clamp(0.0, 1.0)
    return {"train": images[train], "test": images[test]}


def endless_batches(data: Tensor, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    while True:
        for (batch,) in batches(
            data, batch_size=batch_size, generator=generator, drop_last=len(data) > batch_size
        ):
            yield batch


def make_vq(name: str, config: Config) -> VQVAE:
    return VQVAE(
        num_codes=config.num_codes,
        code_dim=config.code_dim,
        hidden=config.hidden,
        beta=config.beta,
        ema=name == "vq_ema",
        decay=config.decay,
        epsilon=config.epsilon,
    )


def _finite(name: str, loss: Tensor, step: int) -> None:
    if not math.isfinite(loss.item()):
        raise PapersError(f"{name}: non-finite loss at step {step}")


def train_vq(name: str, data: dict, config: Config, ctx) -> dict:
    torch.manual_seed(ctx.seed)
    model = make_vq(name, config)
    train, test = data["train"], data["test"]
    variance = train.var().item()
    with torch.no_grad():
        model.eval()
        init_perplexity = perplexity(model.encode(test), config.num_codes)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    stream = endless_batches(train, config.batch_size, torch.Generator().manual_seed(ctx.seed + 1))
    curve = {"step": [], "perplexity": [], "mse": []}
    usage = torch.zeros(config.num_codes, dtype=torch.float64)
    start = time.perf_counter()
    model.train()
    with ctx.progress_bar(config.steps, LABELS[name]) as bar:
        for step in range(1, config.steps + 1):
            x = next(stream)
            recon, vq = model(x)
            mse = F.mse_loss(recon, x)
            loss = mse / variance + vq.loss
            _finite(name, loss, step)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            usage += code_counts(vq.indices, config.num_codes)
            bar.update(1, loss=loss.item())
            if step % config.log_every == 0 or step == config.steps:
                batch_perplexity = perplexity_of_counts(usage)  # of the codes picked since the last log
                usage.zero_()
                curve["step"].append(step)
                curve["perplexity"].append(batch_perplexity)
                curve["mse"].append(mse.item())
                ctx.log(
                    {
                        f"{name}_loss": loss.item(),
                        f"{name}_mse": mse.item(),
                        f"{name}_perplexity": batch_perplexity,
                    },
                    step=step,
                )
    train_time = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        recon, vq = model(test)
        test_codes = vq.indices
        counts = code_counts(test_codes, config.num_codes)
        out = {
            "test_mse": F.mse_loss(recon, test).item(),
            "train_mse": F.mse_loss(model(train)[0], train).item(),
            "test_perplexity": perplexity_of_counts(counts),
            "init_perplexity": init_perplexity,
            "codes_used": int((counts > 0).sum()),
            "commitment": vq.commitment_loss.item(),
            "params": n_params(model) + (model.quantizer.codebook.numel() if model.quantizer.ema else 0),
            "train_time_s": train_time,
            "curve": curve,
            "recon_examples": recon[:10, 0].tolist(),
        }
    ctx.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), ctx.checkpoint_dir / f"{name}.pt")
    return out


def train_vae(data: dict, config: Config, ctx) -> dict:
    torch.manual_seed(ctx.seed)
    model = GaussianVAE(latent_dim=config.code_dim, hidden=config.hidden)
    train, test = data["train"], data["test"]
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    stream = endless_batches(train, config.batch_size, torch.Generator().manual_seed(ctx.seed + 1))
    curve = {"step": [], "mse": [], "kl": []}
    start = time.perf_counter()
    model.train()
    with ctx.progress_bar(config.steps, LABELS["vae"]) as bar:
        for step in range(1, config.steps + 1):
            x = next(stream)
            loss, mse, kl = model.loss(x)
            _finite("vae", loss, step)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            bar.update(1, loss=loss.item())
            if step % config.log_every == 0 or step == config.steps:
                curve["step"].append(step)
                curve["mse"].append(mse.item())
                curve["kl"].append(kl.item())
                ctx.log({"vae_loss": loss.item(), "vae_mse": mse.item(), "vae_kl": kl.item()}, step=step)
    train_time = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        recon = model.reconstruct(test)
        mean, log_var = model.posterior(test)
        kl_per_dim = 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).mean(0)  # (D, h, w), nats
        sampled_mse = F.mse_loss(model(test)[0], test).item()
        return {
            "test_mse": F.mse_loss(recon, test).item(),
            "test_mse_sampled_z": sampled_mse,
            "train_mse": F.mse_loss(model.reconstruct(train), train).item(),
            "kl_nats": kl_per_dim.sum().item(),
            "active_dims": int((kl_per_dim > 0.01).sum()),
            "latent_dims": kl_per_dim.numel(),
            "sigma": model.sigma.item(),
            "params": n_params(model),
            "train_time_s": train_time,
            "curve": curve,
            "recon_examples": recon[:10, 0].tolist(),
        }


def load_vq(name: str, config: Config, ctx) -> VQVAE:
    path = ctx.checkpoint_dir / f"{name}.pt"
    if not path.is_file():
        raise PapersError(f"the prior needs the trained {name} weights, missing: {path}")
    model = make_vq(name, config)
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def nearest_distance(samples: Tensor, reference: Tensor) -> float:
    """Mean over samples of the per-pixel MSE to the nearest reference image."""
    distances = torch.cdist(samples.flatten(1), reference.flatten(1)).pow(2) / samples[0].numel()
    return distances.min(1).values.mean().item()


def train_prior(data: dict, config: Config, ctx) -> dict:
    vq = load_vq(config.prior_on, config, ctx)
    with torch.no_grad():
        train_codes, test_codes = vq.encode(data["train"]), vq.encode(data["test"])
    grid = tuple(train_codes.shape[1:])
    train_seq, test_seq = train_codes.flatten(1), test_codes.flatten(1)
    torch.manual_seed(ctx.seed)
    prior = CodePrior(
        num_codes=config.num_codes,
        length=train_seq.shape[1],
        width=config.prior_width,
        layers=config.prior_layers,
        heads=config.prior_heads,
        dropout=config.prior_dropout,
    )
    optimizer = torch.optim.AdamW(
        prior.parameters(), lr=config.prior_lr, weight_decay=config.prior_weight_decay
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.prior_steps)
    stream = endless_batches(train_seq, config.batch_size, torch.Generator().manual_seed(ctx.seed + 2))
    curve = {"step": [], "train_bits": [], "test_bits": []}
    start = time.perf_counter()
    with ctx.progress_bar(config.prior_steps, "prior") as bar:
        for step in range(1, config.prior_steps + 1):
            prior.train()
            loss = prior.nll_bits(next(stream)).mean()
            _finite("prior", loss, step)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1, bits=loss.item())
            if step % config.log_every == 0 or step == config.prior_steps:
                prior.eval()
                with torch.no_grad():
                    test_bits = prior.nll_bits(test_seq).mean().item()
                curve["step"].append(step)
                curve["train_bits"].append(loss.item())
                curve["test_bits"].append(test_bits)
                ctx.log({"prior_bits": loss.item(), "prior_test_bits": test_bits}, step=step)
    train_time = time.perf_counter() - start
    prior.eval()
    frequencies = code_counts(train_seq, config.num_codes) + 1.0  # add-one smoothed training frequencies
    frequencies = frequencies / frequencies.sum()
    generator = torch.Generator().manual_seed(ctx.seed + 3)
    with torch.no_grad():
        prior_bits = prior.nll_bits(test_seq).mean().item()
        iid_bits = (-frequencies.log2()[test_seq]).mean().item()
        sampled = prior.sample(config.samples, generator=generator)
        iid = torch.multinomial(frequencies.float(), sampled.numel(), replacement=True, generator=generator)
        prior_images = vq.decode(sampled.view(-1, *grid)).clamp(0, 1)
        iid_images = vq.decode(iid.view(-1, *grid)).clamp(0, 1)
    return {
        "prior_bits": prior_bits,
        "iid_bits": iid_bits,
        "uniform_bits": math.log2(config.num_codes),
        "prior_params": n_params(prior),
        "prior_train_time_s": train_time,
        "prior_sample_nn_mse": nearest_distance(prior_images, data["test"]),
        "iid_sample_nn_mse": nearest_distance(iid_images, data["test"]),
        "prior_samples": prior_images[:, 0].tolist(),
        "iid_samples": iid_images[:, 0].tolist(),
        "curve": curve,
    }


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    data = load_data(config, ctx.seed)
    parts = {name: ctx.stage(name, lambda n=name: train_vq(n, data, config, ctx)) for name in VQ_MODELS}
    parts["vae"] = ctx.stage("vae", lambda: train_vae(data, config, ctx))
    prior = ctx.stage("prior", lambda: train_prior(data, config, ctx))

    m: dict[str, float] = {}
    for name in ("vq", "vq_ema", "vae"):
        for key in ("test_mse", "train_mse", "params", "train_time_s"):
            m[f"{name}_{key}"] = parts[name][key]
    for name in VQ_MODELS:
        for key in ("test_perplexity", "init_perplexity", "codes_used"):
            m[f"{name}_{key}"] = parts[name][key]
    m["vae_test_mse_sampled_z"] = parts["vae"]["test_mse_sampled_z"]
    m["vae_kl_nats"] = parts["vae"]["kl_nats"]
    m["vae_active_dims"] = parts["vae"]["active_dims"]
    m["vq_latent_nats"] = parts["vae"]["latent_dims"] / config.code_dim * math.log(config.num_codes)
    for key in (
        "prior_bits",
        "iid_bits",
        "uniform_bits",
        "prior_sample_nn_mse",
        "iid_sample_nn_mse",
        "prior_params",
        "prior_train_time_s",
    ):
        m[key] = prior[key]
    p = config.prior_on
    checks = [
        Check(
            "VQ-VAE (codebook loss) reconstructs test digits about as well as the Gaussian VAE",
            m["vq_test_mse"],
            "<=",
            m["vae_test_mse"],
            "Gaussian VAE test MSE",
        ),
        Check(
            "VQ-VAE (EMA) reconstructs test digits about as well as the Gaussian VAE",
            m["vq_ema_test_mse"],
            "<=",
            m["vae_test_mse"],
            "Gaussian VAE test MSE",
        ),
        Check(
            "training spreads code usage (codebook loss): test perplexity above its value at initialisation",
            m["vq_test_perplexity"],
            ">",
            m["vq_init_perplexity"],
            "perplexity at initialisation",
        ),
        Check(
            "training spreads code usage (EMA): test perplexity above its value at initialisation",
            m["vq_ema_test_perplexity"],
            ">",
            m["vq_ema_init_perplexity"],
            "perplexity at initialisation",
        ),
        Check(
            "the autoregressive prior beats a uniform prior over codes (test bits per code)",
            m["prior_bits"],
            "<",
            m["uniform_bits"],
            "log2 K",
        ),
        Check(
            "the autoregressive prior beats i.i.d. codes with the training frequencies (bits per code)",
            m["prior_bits"],
            "<",
            m["iid_bits"],
            "i.i.d. code prior",
        ),
        Check(
            "decoded prior samples lie closer to real test digits than decoded i.i.d. codes",
            m["prior_sample_nn_mse"],
            "<",
            m["iid_sample_nn_mse"],
            "i.i.d.-code samples, NN MSE",
        ),
    ]
    figure_reconstructions(parts, data, ctx)
    figure_curves(parts, prior, config, ctx)
    figure_samples(prior, ctx)
    k = config.num_codes
    notes = (
        f"Digits at {config.size}x{config.size}, 4x4 latent grid, K={k}, D={config.code_dim}, {config.steps} "
        f"steps each. Test MSE: VQ {m['vq_test_mse']:.4f}, VQ-EMA {m['vq_ema_test_mse']:.4f}, Gaussian VAE "
        f"{m['vae_test_mse']:.4f} (posterior mean; {m['vae_test_mse_sampled_z']:.4f} with a sampled z). "
        f"Codebook perplexity on the test set: VQ {m['vq_test_perplexity']:.1f} ({m['vq_codes_used']} of {k} "
        f"codes used; {m['vq_init_perplexity']:.1f} at initialisation), VQ-EMA "
        f"{m['vq_ema_test_perplexity']:.1f} ({m['vq_ema_codes_used']} used; "
        f"{m['vq_ema_init_perplexity']:.1f} at initialisation). The VAE's KL is {m['vae_kl_nats']:.1f} nats "
        f"per image with {m['vae_active_dims']} of {parts['vae']['latent_dims']} latent dimensions active "
        f"(KL > 0.01 nats), against at most {m['vq_latent_nats']:.1f} nats (positions x log K) for the VQ "
        f"codes. Prior on the {LABELS[p]} codes: {m['prior_bits']:.2f} bits per code on test images vs "
        f"{m['iid_bits']:.2f} (i.i.d. frequencies) and {m['uniform_bits']:.2f} (uniform); samples' "
        f"nearest-test-digit MSE {m['prior_sample_nn_mse']:.4f} vs "
        f"{m['iid_sample_nn_mse']:.4f} for i.i.d. codes."
    )
    failed = [c.name for c in checks if not c.passed]
    if failed:
        notes += " Did not hold: " + "; ".join(failed) + "."
    if (
        m["vae_test_mse"] < min(m["vq_test_mse"], m["vq_ema_test_mse"])
        and m["vae_kl_nats"] > m["vq_latent_nats"]
    ):
        notes += (
            f" The VAE's KL ({m['vae_kl_nats']:.0f} nats) exceeds the most the VQ codes can carry "
            f"({m['vq_latent_nats']:.0f} nats), so at its ELBO optimum the continuous latent just transmits "
            f"more about each image; the paper's comparison is of likelihoods (bits/dim), not MSE, and an "
            f"equal-rate VAE was not trained here. No posterior collapse in the VQ models: perplexity rose "
            f"from ~{m['vq_init_perplexity']:.0f} at initialisation to near K."
        )
    return Result(metrics=m, checks=checks, notes=notes)


def _image_grid(ax, rows: list[list], title: str = "", row_labels: list[str] | None = None) -> None:
    import numpy as np

    tiles = [
        np.concatenate([np.pad(np.asarray(img), 1, constant_values=1.0) for img in row], axis=1)
        for row in rows
    ]
    ax.imshow(np.concatenate(tiles, axis=0), cmap="gray_r", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.grid(False)
    if row_labels:
        side = np.asarray(rows[0][0]).shape[0] + 2
        ax.set_yticks([side * (i + 0.5) for i in range(len(rows))], row_labels, fontsize=8)
    else:
        ax.set_yticks([])
    ax.set_title(title)


def figure_reconstructions(parts: dict, data: dict, ctx) -> None:
    from papers.core.plots import figure

    fig, (ax,) = figure(width=7.0, height=3.2)
    originals = data["test"][:10, 0].clamp(0, 1).tolist()
    rows = [originals] + [
        [[[min(max(v, 0.0), 1.0) for v in r] for r in img] for img in parts[n]["recon_examples"]]
        for n in ("vq", "vq_ema", "vae")
    ]
    labels = ["test", "VQ", "VQ-EMA", "VAE"]
    title = (
        "reconstructions (test MSE: "
        + ", ".join(
            f"{lab} {parts[n]['test_mse']:.4f}"
            for lab, n in zip(labels[1:], ("vq", "vq_ema", "vae"), strict=True)
        )
        + ")"
    )
    _image_grid(ax, rows, title, labels)
    ctx.save_figure(fig, "reconstructions")


def figure_samples(prior: dict, ctx) -> None:
    from papers.core.plots import figure

    fig, axes = figure(ncols=2, width=4.0, height=4.2)
    for ax, key, title in (
        (axes[0], "prior_samples", "codes from the prior"),
        (axes[1], "iid_samples", "i.i.d. codes (training frequencies)"),
    ):
        images = prior[key]
        cols = 8
        rows = [images[i : i + cols] for i in range(0, len(images) - len(images) % cols or len(images), cols)]
        rows = [row for row in rows if len(row) == len(rows[0])]
        _image_grid(ax, rows, title)
    ctx.save_figure(fig, "samples")


def figure_curves(parts: dict, prior: dict, config: Config, ctx) -> None:
    from papers.core.plots import figure, moving_average

    fig, axes = figure(ncols=3, width=3.8, height=3.2)
    for name in VQ_MODELS:
        c = parts[name]["curve"]
        axes[0].plot(c["step"], c["perplexity"], label=LABELS[name])
    axes[0].axhline(config.num_codes, color="0.5", ls=":", label=f"K = {config.num_codes}")
    axes[0].set(xlabel="step", ylabel="perplexity of codes used", title="codebook perplexity")
    axes[0].legend(fontsize=7)
    for name in ("vq", "vq_ema", "vae"):
        c = parts[name]["curve"]
        axes[1].plot(c["step"], moving_average(c["mse"], 5), label=LABELS[name])
    axes[1].set(xlabel="step", ylabel="training batch MSE", title="reconstruction", yscale="log")
    axes[1].legend(fontsize=7)
    c = prior["curve"]
    axes[2].plot(c["step"], c["train_bits"], label="prior, train batch")
    axes[2].plot(c["step"], c["test_bits"], label="prior, test")
    axes[2].axhline(prior["iid_bits"], color="C3", ls="--", label="i.i.d. frequencies")
    axes[2].axhline(prior["uniform_bits"], color="0.5", ls=":", label="uniform")
    axes[2].set(xlabel="step", ylabel="bits per code", title="code prior")
    axes[2].legend(fontsize=7)
    ctx.save_figure(fig, "curves")
