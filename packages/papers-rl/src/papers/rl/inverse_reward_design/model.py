"""Inverse Reward Design in a lava grid world: exact planning, the IRD posterior, risk-averse planning.

Grid world. Cells are one of ``dirt``, ``grass``, ``lava`` or ``target`` (plus the start cell, which
is dirt). The agent moves up, down, left or right (a move into the border leaves it in place and it
"enters" its own cell again); the target is absorbing: once entered, the agent stays on it for the rest
of the ``horizon`` steps. The trajectory features are the counts of the cells occupied after each of
the ``horizon`` steps, so Σ_k φ_k = horizon for every trajectory,

    φ(ξ) = [#dirt, #grass, #lava, #target] ∈ N⁴,      r_w(ξ) = wᵀ φ(ξ).

Exact planning. The dynamics are deterministic and the reward is linear in φ, so every planning
problem below is an optimisation over the finite set C(M) of feature-count vectors that some trajectory
of the map M can realise. :func:`reachable_counts` enumerates C(M) exactly by dynamic programming over
(layer t, cell, #dirt, #grass) — #lava = t − #dirt − #grass — and :func:`trajectory_for` recovers one
trajectory with a given count vector by backtracking. Ties between equally rewarded count vectors are
broken towards reaching the target sooner, then by a fixed order. Because every trajectory has the same
length, adding a constant to every weight does not change any plan: rewards are defined up to that
shift, which is why the risk-averse planner needs a comparison point.

IRD observation model (Sec. 3, Eq. 2–3 of the paper). The designer picks the proxy w̃ so that the
behaviour it induces in the training MDP M̃ is good under the true w*:

    P(w̃ | w*, M̃) ∝ exp(β · w*ᵀ φ̃(w̃)),        φ̃(w) = φ(ξ*_w),  ξ*_w = argmax_{ξ in M̃} wᵀφ(ξ)

so the posterior is

    P(w* | w̃, M̃) ∝ P(w*) · exp(β w*ᵀ φ̃(w̃)) / Z̃(w*),        Z̃(w*) = ∫ exp(β w*ᵀ φ̃(w)) dw,

with Z̃ approximated by N proxies w_j sampled from the proxy prior (the paper's "sample Z" method):
Z̃(w*) ≈ (1/N) Σ_j exp(β w*ᵀ φ̃(w_j)). The posterior is sampled by self-normalised importance sampling
from the prior (:func:`ird_posterior`).

Risk-averse planning (Sec. 4). With posterior samples w_1..w_K, plan in the test MDP for the worst case,
each sampled reward measured relative to a comparison point c (rewards are only defined up to the
choice of what counts as "zero"):

    trajectory:  ξ* = argmax_ξ min_i  w_iᵀ (φ(ξ) − c)          c = φ̃(w̃), the training behaviour's features
    time step:   ξ* = argmax_ξ Σ_t min_i w_iᵀ (φ(s_t) − c̄)      c̄ = φ̃(w̃) / |ξ̃|, its per-step average

(c = 0 gives the un-normalised worst case). Features that never occur in M̃ (lava) leave the likelihood
unchanged, so their posterior is the prior and the worst case over it avoids them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "DIRT",
    "FEATURES",
    "GRASS",
    "LAVA",
    "MOVES",
    "TARGET",
    "GridMap",
    "Posterior",
    "best_count",
    "feature_expectations",
    "ird_log_likelihood",
    "ird_posterior",
    "plan",
    "random_map",
    "training_map",
    "lava_free_path_exists",
    "reachable_counts",
    "risk_averse_values",
    "trajectory_for",
]

DIRT, GRASS, LAVA, TARGET = 0, 1, 2, 3
FEATURES = ("dirt", "grass", "lava", "target")
MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right


@dataclass
class GridMap:
    """A map: ``cells[r, c]`` in {DIRT, GRASS, LAVA, TARGET}, a start cell (never the target)."""

    cells: np.ndarray
    start: tuple[int, int]

    def __post_init__(self) -> None:
        self.cells = np.asarray(self.cells)
        if self.cells.ndim != 2 or min(self.cells.shape) < 1:
            raise ValueError(f"cells must be a non-empty 2-D array, got shape {self.cells.shape}")
        if not np.isin(self.cells, (DIRT, GRASS, LAVA, TARGET)).all():
            raise ValueError("cells must hold only DIRT=0, GRASS=1, LAVA=2, TARGET=3")
        r, c = self.start
        if not (0 <= r < self.cells.shape[0] and 0 <= c < self.cells.shape[1]):
            raise ValueError(f"start {self.start} is outside the {self.cells.shape} map")
        if self.cells[r, c] == TARGET:
            raise ValueError("the start cell cannot be the target")
        self.start = (int(r), int(c))

    @property
    def shape(self) -> tuple[int, int]:
        return self.cells.shape

    def successors(self) -> np.ndarray:
        """``[4, n_cells]``: the flat cell reached from each cell by each move (walls keep it in place)."""
        rows, cols = self.shape
        r, c = np.divmod(np.arange(rows * cols), cols)
        out = np.empty((len(MOVES), rows * cols), dtype=np.int64)
        for a, (dr, dc) in enumerate(MOVES):
            nr, nc = r + dr, c + dc
            inside = (nr >= 0) & (nr < rows) & (nc >= 0) & (nc < cols)
            out[a] = np.where(inside, nr * cols + nc, r * cols + c)
        return out


@dataclass
class Reachable:
    """All feature-count vectors a map can realise within ``horizon`` moves, and the layers to backtrack.

    ``counts[k] = [#dirt, #grass, #lava, #target]``; ``ends[k]`` the flat cell it ends in; ``layers[t]``
    the boolean reachability ``[n_cells, horizon + 1, horizon + 1]`` over (cell, #dirt, #grass) after t
    non-terminal moves.
    """

    grid: GridMap
    horizon: int
    counts: np.ndarray
    ends: np.ndarray
    layers: list[np.ndarray]


def _shift(block: np.ndarray, axis: int) -> np.ndarray:
    """``block`` moved one step up along a count axis (a count grows by one; the top spills off)."""
    out = np.zeros_like(block)
    index = [slice(None)] * block.ndim
    source = list(index)
    index[axis], source[axis] = slice(1, None), slice(None, -1)
    out[tuple(index)] = block[tuple(source)]
    return out


def reachable_counts(grid: GridMap, horizon: int) -> Reachable:
    """Enumerate exactly the count vectors of every trajectory of at most ``horizon`` moves.

    A trajectory either enters the target at some move t ≤ horizon and stays there
    (#target = horizon − t + 1), or makes ``horizon`` moves without entering it (#target = 0). Each
    layer moves the whole boolean array (rows, cols, #dirt, #grass) by each of the four moves and adds
    the entered cell's feature.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    rows, cols = grid.shape
    kinds = grid.cells
    size = horizon + 1
    layer = np.zeros((rows, cols, size, size), dtype=bool)
    layer[grid.start[0], grid.start[1], 0, 0] = True
    dirt = (kinds == DIRT)[:, :, None, None]
    grass = (kinds == GRASS)[:, :, None, None]
    lava = (kinds == LAVA)[:, :, None, None]
    target = kinds == TARGET
    layers, finished = [layer.reshape(rows * cols, size, size)], {}
    d_index, g_index = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    for t in range(horizon):
        arrive = np.zeros_like(layer)
        arrive[:-1] |= layer[1:]  # up
        arrive[0] |= layer[0]
        arrive[1:] |= layer[:-1]  # down
        arrive[-1] |= layer[-1]
        arrive[:, :-1] |= layer[:, 1:]  # left
        arrive[:, 0] |= layer[:, 0]
        arrive[:, 1:] |= layer[:, :-1]  # right
        arrive[:, -1] |= layer[:, -1]
        for r, c in zip(*np.nonzero(target), strict=True):
            for d, g in zip(d_index[arrive[r, c]], g_index[arrive[r, c]], strict=True):
                finished.setdefault((int(d), int(g), t - int(d) - int(g), horizon - t), r * cols + c)
        layer = (dirt & _shift(arrive, 2)) | (grass & _shift(arrive, 3)) | (lava & arrive)
        layers.append(layer.reshape(rows * cols, size, size))
    flat = layers[-1]
    for d, g in zip(*np.nonzero(flat.any(axis=0)), strict=True):
        cell = int(np.nonzero(flat[:, d, g])[0][0])
        finished.setdefault((int(d), int(g), horizon - int(d) - int(g), 0), cell)
    keys = sorted(finished)
    counts = np.array(keys, dtype=np.float64).reshape(-1, 4)
    ends = np.array([finished[k] for k in keys], dtype=np.int64)
    return Reachable(grid, horizon, counts, ends, layers)


def _tiebreak(counts: np.ndarray) -> np.ndarray:
    """Lower is preferred among equally rewarded count vectors: reach the target sooner."""
    return -counts[..., TARGET]


def best_count(reach: Reachable, values: np.ndarray) -> int:
    """Index of the best count vector under per-vector ``values``: ties to reaching the target sooner."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(reach.counts),):
        raise ValueError(f"values must have shape ({len(reach.counts)},), got {values.shape}")
    best = values.max()
    tied = np.nonzero(values >= best - 1e-9 * max(1.0, abs(best)))[0]
    return int(tied[np.argmin(_tiebreak(reach.counts[tied]))])  # first minimum: a fixed order


def plan(reach: Reachable, w: np.ndarray) -> int:
    """The optimal trajectory's count-vector index for the linear reward ``wᵀφ``."""
    w = np.asarray(w, dtype=np.float64)
    if w.shape != (4,):
        raise ValueError(f"w must have shape (4,) = {FEATURES}, got {w.shape}")
    return best_count(reach, reach.counts @ w)


def feature_expectations(reach: Reachable, weights: np.ndarray) -> np.ndarray:
    """φ̃(w) for a batch of weights ``[N, 4]``: the features of each one's optimal trajectory.

    Vectorised over the batch: ``argmax`` of ``counts @ wᵀ`` with ties broken as in :func:`best_count`.
    """
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if weights.ndim != 2 or weights.shape[1] != 4:
        raise ValueError(f"weights must have shape [N, 4], got {weights.shape}")
    values = reach.counts @ weights.T  # [K, N]
    best = values.max(axis=0, keepdims=True)
    tied = values >= best - 1e-9 * np.maximum(1.0, np.abs(best))
    score = np.where(tied, -_tiebreak(reach.counts)[:, None], -np.inf)
    return reach.counts[np.argmax(score, axis=0)]


def trajectory_for(reach: Reachable, index: int) -> list[tuple[int, int]]:
    """One trajectory (list of cells, start first, ending where it first enters the target) with the
    count vector ``reach.counts[index]``."""
    grid, cols = reach.grid, reach.grid.shape[1]
    kinds = grid.cells.reshape(-1)
    succ = grid.successors()
    d, g, lava, target = (int(x) for x in reach.counts[index])
    cell = int(reach.ends[index])
    t = d + g + lava  # non-terminal moves
    path = [cell]
    if target:  # the last move entered the target from a cell of layer t
        preds = [s for a in range(len(MOVES)) for s in np.nonzero(succ[a] == cell)[0]]
        cell = next(int(s) for s in preds if reach.layers[t][s, d, g])
        path.append(cell)
    while t > 0:
        kind = kinds[cell]
        pd, pg = d - (kind == DIRT), g - (kind == GRASS)
        preds = [s for a in range(len(MOVES)) for s in np.nonzero(succ[a] == cell)[0]]
        cell = next(int(s) for s in preds if kinds[s] != TARGET and reach.layers[t - 1][s, pd, pg])
        d, g, t = int(pd), int(pg), t - 1
        path.append(cell)
    return [divmod(c, cols) for c in reversed(path)]


# ---------- the IRD posterior ----------


def ird_log_likelihood(
    w_true: np.ndarray, phi_proxy: np.ndarray, phi_samples: np.ndarray, beta: float
) -> np.ndarray:
    """log P(w̃ | w*, M̃) = β w*ᵀφ̃(w̃) − log Z̃(w*), Z̃ ≈ mean_j exp(β w*ᵀφ̃(w_j)), for ``w_true [M, 4]``."""
    w_true = np.atleast_2d(w_true)
    # proxies with the same behaviour give the same term: sum over the distinct φ̃ with their frequencies
    distinct, freq = np.unique(np.asarray(phi_samples, dtype=np.float64), axis=0, return_counts=True)
    logits = beta * (w_true @ distinct.T) + np.log(freq / freq.sum())  # [M, distinct]
    top = logits.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return beta * (w_true @ np.asarray(phi_proxy)) - log_z


@dataclass
class Posterior:
    """Importance-sampled IRD posterior: prior draws, their normalised weights and resampled draws."""

    prior_samples: np.ndarray  # [M, 4]
    weights: np.ndarray  # [M], normalised importance weights
    samples: np.ndarray  # [K, 4], resampled
    effective_sample_size: float

    @property
    def mean(self) -> np.ndarray:
        return self.weights @ self.prior_samples

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.weights @ (self.prior_samples - self.mean) ** 2, 0.0))


def ird_posterior(
    reach_train: Reachable,
    proxy: np.ndarray,
    *,
    beta: float,
    prior_std: float,
    n_proxy_samples: int,
    n_prior_samples: int,
    n_posterior: int,
    rng: np.random.Generator,
    prior: str = "sphere",
) -> Posterior:
    """Sample P(w* | w̃, M̃) ∝ P(w*) · exp(β w*ᵀφ̃(w̃)) / Z̃(w*).

    ``prior``: ``"gaussian"``, N(0, σ²I); or ``"sphere"``, uniform on the sphere |w| = σ (the plans of w
    and of c·w, c > 0, are the same, so only the direction of a reward is identifiable). Z̃ is estimated
    from ``n_proxy_samples`` proxies drawn from the same prior; the posterior by ``n_prior_samples``
    prior draws with weights ∝ the likelihood, resampled to ``n_posterior`` draws.
    """
    for name, value in (
        ("n_proxy_samples", n_proxy_samples),
        ("n_prior_samples", n_prior_samples),
        ("n_posterior", n_posterior),
    ):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not (beta > 0 and prior_std > 0):
        raise ValueError(f"beta and prior_std must be > 0, got {beta}, {prior_std}")
    if prior not in ("gaussian", "sphere"):
        raise ValueError(f"prior must be 'gaussian' or 'sphere', got {prior!r}")

    def draw(n: int) -> np.ndarray:
        z = rng.standard_normal((n, 4))
        if prior == "sphere":
            z /= np.linalg.norm(z, axis=1, keepdims=True)
        return prior_std * z

    phi_proxy = feature_expectations(reach_train, proxy)[0]
    phi_samples = feature_expectations(reach_train, draw(n_proxy_samples))
    draws = draw(n_prior_samples)
    log_w = ird_log_likelihood(draws, phi_proxy, phi_samples, beta)
    weights = np.exp(log_w - log_w.max())
    weights /= weights.sum()
    picks = rng.choice(n_prior_samples, size=n_posterior, replace=True, p=weights)
    return Posterior(draws, weights, draws[picks], float(1.0 / np.sum(weights**2)))


# ---------- risk-averse planning ----------


def risk_averse_values(
    counts: np.ndarray, samples: np.ndarray, baseline: np.ndarray, mode: str = "trajectory"
) -> np.ndarray:
    """Worst-case value of every count vector over the reward samples, relative to ``baseline``.

    ``trajectory``: min_i w_iᵀ(φ − c). ``timestep``: Σ_k φ_k min_i (w_ik − w_iᵀ c̄) with c̄ = c / Σc
    the per-step comparison point (the reward of a step is the weight of its cell's feature; the worst
    case is taken per step, so per feature). With Σφ = Σc both are invariant to shifting any sample by
    a constant on every feature; with c = 0 the trajectory form is not.
    """
    samples = np.atleast_2d(samples)
    baseline = np.asarray(baseline, dtype=np.float64)
    if mode == "trajectory":
        return ((counts - baseline) @ samples.T).min(axis=1)
    if mode == "timestep":
        per_step = baseline / max(baseline.sum(), 1.0)
        step_reward = (samples - (samples @ per_step)[:, None]).min(axis=0)  # [4]
        return counts @ step_reward
    raise ValueError(f"mode must be 'trajectory' or 'timestep', got {mode!r}")


# ---------- maps ----------


def random_map(
    rng: np.random.Generator,
    size: int = 10,
    *,
    n_roads: int = 3,
    n_lava: int = 0,
    lava_size: int = 2,
    max_tries: int = 200,
) -> GridMap:
    """A random Lavaland map: grass with ``n_roads`` straight dirt roads, a start on the left, the target
    on the right; ``n_lava`` square lava patches centred on points of the start–target segment, placed
    only if the target stays reachable without lava (:func:`lava_free_path_exists`)."""
    if size < 4:
        raise ValueError(f"size must be >= 4, got {size}")
    for _ in range(max_tries):
        cells = np.full((size, size), GRASS, dtype=np.int64)
        for _ in range(n_roads):
            fixed = int(rng.integers(size))
            a, b = sorted(int(x) for x in rng.integers(0, size, 2))
            if rng.random() < 0.5:
                cells[fixed, a : b + 1] = DIRT
            else:
                cells[a : b + 1, fixed] = DIRT
        start = (int(rng.integers(size)), int(rng.integers(size // 4 + 1)))
        goal = (int(rng.integers(size)), int(rng.integers(size - size // 4 - 1, size)))
        cells[start] = DIRT
        for _ in range(n_lava):
            f = rng.uniform(0.25, 0.75)
            cr = round(start[0] + f * (goal[0] - start[0])) + int(rng.integers(-1, 2))
            cc = round(start[1] + f * (goal[1] - start[1]))
            r0, c0 = cr - lava_size // 2, cc - lava_size // 2
            cells[max(r0, 0) : max(r0 + lava_size, 0), max(c0, 0) : max(c0 + lava_size, 0)] = LAVA
        cells[start] = DIRT
        cells[goal] = TARGET
        grid = GridMap(cells, start)
        if lava_free_path_exists(grid):
            return grid
    raise RuntimeError(f"random_map: no map with a lava-free path in {max_tries} tries")


def lava_free_path_exists(grid: GridMap) -> bool:
    """Breadth-first search from the start through non-lava cells to the target."""
    succ, kinds = grid.successors(), grid.cells.reshape(-1)
    seen = {grid.start[0] * grid.shape[1] + grid.start[1]}
    frontier = list(seen)
    while frontier:
        nxt = []
        for cell in frontier:
            for a in range(len(MOVES)):
                d = int(succ[a, cell])
                if d in seen or kinds[d] == LAVA:
                    continue
                if kinds[d] == TARGET:
                    return True
                seen.add(d)
                nxt.append(d)
        frontier = nxt
    return False


def training_map(size: int = 10) -> GridMap:
    """The fixed training MDP M̃ (no lava): start and target on the middle row, a dirt road one row above
    (two moves longer than the straight grass line) and a short dirt stretch below, grass elsewhere, so
    the proxy's choice (dirt detour or grass shortcut) says how much worse grass is than dirt."""
    if size < 6:
        raise ValueError(f"size must be >= 6, got {size}")
    cells = np.full((size, size), GRASS, dtype=np.int64)
    mid = size // 2
    cells[mid - 1 : mid + 1, 0] = DIRT  # up from the start
    cells[mid - 1, :] = DIRT  # along the row above the start-target line
    cells[mid - 1, size - 1] = DIRT  # down to the target
    gap = size // 2 - 1
    cells[mid - 1, gap : gap + 2] = GRASS  # a two-cell grass gap in the road ...
    cells[mid - 3, gap - 1 : gap + 3] = DIRT  # ... with a longer dirt bypass round it
    cells[mid - 3 : mid - 1, gap - 1] = DIRT
    cells[mid - 3 : mid - 1, gap + 2] = DIRT
    cells[mid + 2, size // 3 : size - size // 3] = DIRT  # a short stretch below
    cells[mid, size - 1] = TARGET
    return GridMap(cells, (mid, 0))
