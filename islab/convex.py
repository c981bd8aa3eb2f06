"""The convex family: squared-hinge + L2 binary classification, its exact optimum, and many
importance-sampled SGD chains run as ONE vectorised numpy update (docs/METHODS.md sections 1, 2, 7).

Objective (N examples, labels y in {-1, +1}, margin m_i = y_i <w, x_i>):

    F(w) = (1/N) sum_i phi_i(w) + (lam/2) ||w||^2,    phi_i(w) = max(0, 1 - m_i)^2.

Each phi_i is once differentiable, grad phi_i(w) = -2 max(0, 1 - m_i) y_i x_i, and its
(generalised) Hessian 2 x_i x_i^T [m_i < 1] is piecewise constant, so a Newton method with a
line search finds the exact optimum (finite termination once the active set is right).

Bounds used by the samplers (R = 1/sqrt(lam), the projection radius):
  * ||w*|| <= 1/sqrt(2 lam) < R.  Proof: at the optimum lam w* = (2/N) sum a_i y_i x_i with
    a_i = max(0, 1 - m_i), so lam ||w*||^2 = (2/N) sum a_i m_i = (2/N) sum_{a_i>0} a_i (1 - a_i)
    <= 2 * max_a a(1 - a) = 1/2.  Projecting onto the ball ||w|| <= R never cuts off w*, for the
    clean and for the corrupted objective alike.
  * On that ball ||grad phi_i(w)|| = 2 a_i ||x_i|| <= G_i = 2 (1 + R ||x_i||) ||x_i||: the
    per-example Lipschitz bound of the sampled (loss) part.  "is-norm" samples p_i ∝ G_i
    (Zhao & Zhang's Lipschitz-bound choice, docs/METHODS.md section 1).  When R ||x_i|| >> 1, G_i is
    ~ 2 R ||x_i||^2, i.e. proportional to the smoothness constant L_i = 2 ||x_i||^2.

The stochastic gradient samples only the loss part; the regulariser is exact:
    g = (1/b) sum_{j in batch} grad phi_{i_j}(w) / (N p_{i_j}) + lam w,
unbiased for grad F for every p > 0 (test_convex checks it by Monte Carlo).

A chain = one SGD run (one data set, one sampling rule, one sampler stream).  `run_chains`
advances C chains together over a (C, d) parameter matrix; each chain draws its indices from
its own numpy Generator, so a chain's numbers never depend on which other chains share the
batch.  `reference_chain` is the plain one-chain loop the vectorised engine must reproduce.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from islab import noise, sampling, seeding

# ---------------------------------------------------------------- data


def make_teacher(d: int, rng: np.random.Generator) -> np.ndarray:
    """The labelling rule: a random unit vector in R^d, shape (d,)."""
    w = rng.standard_normal(d)
    return w / np.linalg.norm(w)


def make_points(n: int, d: int, rho: float, ratio: float, margin: float, teacher: np.ndarray,
                rng: np.random.Generator):
    """Two-cluster data with heterogeneous norms, linearly separable with a margin.

    z ~ N(0, I_d / d) (norm ~ 1); label y = sign(<teacher, z>) (+1 at 0); then z is pushed
    by y * margin * teacher, so y <teacher, z> >= margin for every point.  Exactly
    round(rho * n) points, at random positions, form the rare cluster and are scaled by
    `ratio` (their norms are `ratio` times the common ones; the labels, which depend on the
    direction only, are unchanged).  The random draws do not depend on `ratio`, so data sets
    that differ only in `ratio` share their points up to that scaling.

    Returns X (n, d) float64, y (n,) float64 in {-1, +1}, rare (n,) bool.
    """
    assert n >= 1 and d >= 1 and 0.0 <= rho < 1.0 and ratio > 0 and margin >= 0
    rare = np.zeros(n, dtype=bool)
    rare[rng.permutation(n)[: int(round(rho * n))]] = True
    z = rng.standard_normal((n, d)) / np.sqrt(d)
    y = np.where(z @ teacher >= 0, 1.0, -1.0)
    z += (y * margin)[:, None] * teacher[None, :]
    with np.errstate(over="ignore", invalid="ignore"):
        X = z * np.where(rare, ratio, 1.0)[:, None]
        finite = np.isfinite(np.einsum("ij,ij->i", X, X)).all()
    if not finite:   # a squared norm beyond float64: every step and score would be inf or nan
        raise SolveError(f"the data cannot be represented: squared norms overflow float64 (--margin {margin:g}, "
                         f"--ratio {ratio:g}); lower them")
    return X, y, rare


# ---------------------------------------------------------------- objective


def margins(w, X, y) -> np.ndarray:
    """m_i = y_i <w, x_i>, shape (N,)."""
    return y * (X @ w)


def losses(w, X, y) -> np.ndarray:
    """Per-example squared hinge phi_i(w) = max(0, 1 - m_i)^2, shape (N,) (no regulariser)."""
    return np.square(np.maximum(0.0, 1.0 - margins(w, X, y)))


def objective(w, X, y, lam: float) -> float:
    """F(w) = mean_i phi_i(w) + (lam/2) ||w||^2."""
    return float(losses(w, X, y).mean() + 0.5 * lam * np.dot(w, w))


def gradient(w, X, y, lam: float) -> np.ndarray:
    """grad F(w), shape (d,)."""
    a = np.maximum(0.0, 1.0 - margins(w, X, y))
    return X.T @ (-2.0 * a * y) / len(y) + lam * w


def example_grad_norms(w, X, y) -> np.ndarray:
    """||grad phi_i(w)|| = 2 max(0, 1 - m_i) ||x_i||, shape (N,) (loss part only)."""
    return 2.0 * np.maximum(0.0, 1.0 - margins(w, X, y)) * np.linalg.norm(X, axis=1)


def ball_radius(lam: float) -> float:
    """R = 1/sqrt(lam): the projection radius (contains every optimum, see module doc)."""
    return 1.0 / np.sqrt(lam)


def gradient_bound(X, lam: float) -> np.ndarray:
    """G_i = 2 (1 + R ||x_i||) ||x_i||: sup of ||grad phi_i(w)|| over ||w|| <= R, shape (N,)."""
    norms = np.linalg.norm(X, axis=1)
    return 2.0 * (1.0 + ball_radius(lam) * norms) * norms


def test_error(w, X, y) -> float:
    """Fraction of examples with y <w, x> <= 0 (a zero score counts as an error)."""
    return float(np.mean(margins(w, X, y) <= 0.0))


@dataclass
class Optimum:
    w: np.ndarray          # (d,) the minimiser
    value: float           # F(w)
    grad_norm: float       # ||grad F(w)||: the tolerance actually reached
    iterations: int


class SolveError(ValueError):
    """The exact optimum of a problem cannot be computed (settings outside the solver's range)."""


def solve(X, y, lam: float, tol: float = 1e-12, max_iter: int = 100) -> Optimum:
    """Exact minimiser of F by the generalised Newton method (deterministic, float64).

    Newton direction from H = (2/N) X_A^T X_A + lam I (A = examples with m_i < 1) and an Armijo
    backtracking line search from the full step.  Once the active set is right the full
    step lands on the exact minimiser of that quadratic piece, so the loop ends at
    ||grad F|| <= tol (absolute) or when no step decreases F any more (round-off floor).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, d = X.shape
    w = np.zeros(d)
    f = objective(w, X, y, lam)
    g = gradient(w, X, y, lam)
    it = 0
    while it < max_iter and np.linalg.norm(g) > tol:
        act = margins(w, X, y) < 1.0
        H = 2.0 / n * (X[act].T @ X[act]) + lam * np.eye(d)
        try:
            step = np.linalg.solve(H, -g)
        except np.linalg.LinAlgError:
            raise SolveError(f"the exact optimum cannot be computed: the Newton system is singular "
                             f"(lambda {lam:g} is too small for data of norm up to "
                             f"{np.linalg.norm(X, axis=1).max():.3g}); raise --lam") from None
        slope = float(g @ step)
        s = 1.0
        while s > 1e-12:
            w_new = w + s * step
            f_new = objective(w_new, X, y, lam)
            if f_new <= f + 1e-4 * s * slope:
                break
            s *= 0.5
        else:  # no decrease possible: we are at the round-off floor
            break
        w, f = w_new, f_new
        g = gradient(w, X, y, lam)
        it += 1
    if not (np.isfinite(w).all() and np.isfinite(f)):
        raise SolveError(f"the exact optimum cannot be computed: Newton's iterate is not finite "
                         f"(lambda {lam:g}, data norm up to {np.linalg.norm(X, axis=1).max():.3g})")
    return Optimum(w=w, value=f, grad_norm=float(np.linalg.norm(g)), iterations=it)


# ---------------------------------------------------------------- problems (data + noise + optima)


def label_key(text: str) -> int:
    """A stable integer for a configuration label (used as an extra seed key)."""
    return zlib.crc32(text.encode())


@dataclass
class Problem:
    """One training set (clean and corrupted labels), its clean test set and both optima."""

    X: np.ndarray            # (N, d)
    y: np.ndarray            # (N,) training labels (corrupted)
    y_clean: np.ndarray      # (N,)
    corrupt: np.ndarray      # (N,) bool, True where y != y_clean
    rare: np.ndarray         # (N,) bool
    X_test: np.ndarray       # (T, d)
    y_test: np.ndarray       # (T,) clean
    opt: Optimum             # optimum of the corrupted training objective
    opt_clean: Optimum       # optimum of the clean training objective
    seed: int
    key: int                 # stable id of (ratio, flip, rate): keys the sampler streams
    info: dict = field(default_factory=dict)


def make_clean(n, n_test, d, rho, ratio, margin, seed, lam) -> Problem:
    """Clean train/test sets of one (ratio, seed) and the clean optimum (purpose 'data').

    Teacher, training points and test points come from three separate streams of the 'data'
    purpose, none of which depends on `ratio`.
    """
    teacher = make_teacher(d, seeding.numpy_rng(seed, "data", 0))
    X, y, rare = make_points(n, d, rho, ratio, margin, teacher, seeding.numpy_rng(seed, "data", 1))
    Xt, yt, _ = make_points(n_test, d, rho, ratio, margin, teacher, seeding.numpy_rng(seed, "data", 2))
    opt = solve(X, y, lam)
    return Problem(X=X, y=y, y_clean=y, corrupt=np.zeros(n, dtype=bool), rare=rare, X_test=Xt,
                   y_test=yt, opt=opt, opt_clean=opt, seed=seed, key=label_key(f"ratio={ratio}|none|0"),
                   info={"ratio": ratio, "flip": "clean", "rate": 0.0})


def attack_score(w, X, y) -> np.ndarray:
    """Targeted-noise score: the rank of ||grad phi_i(w)|| under the attacker w (the clean
    optimum, or an SGD-trained attacker).

    Examples with margin >= 1 all have gradient 0, so when the attack asks for more flips than
    there are non-zero gradients the ties are broken by the smaller margin (closest to the
    boundary first), not by the example index.  Returns ranks 0..N-1 (higher = flipped first).
    """
    order = np.lexsort((-margins(w, X, y), example_grad_norms(w, X, y)))  # last key is primary
    rank = np.empty(len(y))
    rank[order] = np.arange(len(y))
    return rank


def train_attacker(cleans, cfg: "SGDConfig", epochs: int) -> np.ndarray:
    """SGD-trained targeted-noise attackers, one per clean problem, as one vectorised run: (P, d).

    The DR-IS paper's attacker is "trained on clean data ... exactly as in the main experiments",
    i.e. an SGD model, not the exact optimum.  Each attacker runs plain uniform SGD (i.i.d.
    draws, weight 1; the proxies' lam, step-size schedule, batch and safe cap) for `epochs`
    epochs on its problem's CLEAN training labels; draws from purpose 'attacker' keyed by the
    problem.  A briefly trained attacker still has small margins, so the largest gradient norms
    2 (1 - m_i) ||x_i|| are those of the large-norm rare cluster; a converged one flips the
    boundary points (see docs/dris-studies.md, synthetic study).
    """
    P = len(cleans)
    N = len(cleans[0].y_clean)
    chains = Chains(data=np.arange(P), rule=["fixed"] * P, p=np.full((P, N), 1.0 / N),
                    reweight=np.zeros(P, dtype=bool),
                    rngs=[seeding.numpy_rng(c.seed, "attacker", c.key) for c in cleans])
    Xs = np.stack([c.X for c in cleans])
    ys = np.stack([c.y_clean for c in cleans])
    return run_chains(Xs, ys, chains, cfg.lam, cfg.t0, cfg.eta_max, epochs, cfg.batch, safe=cfg.safe).W[-1]


def corrupt(clean: Problem, flip: str, rate: float, lam: float, attacker_w=None) -> Problem:
    """Flip labels of a clean problem (islab.noise.binary_flip) and solve the noisy objective.

    targeted: the top noise.n_corrupt(N, rate) by ||grad phi_i|| of the attacker (ties: smaller
    margin first, then lower index); the attacker is `attacker_w` (d,) when given (e.g. from
    `train_attacker`), else the exact clean optimum (docs/METHODS.md section 2's binary rule).  rare:
    uniformly inside the rare cluster; uniform: uniformly.  Noise stream: purpose 'noise' keyed by
    (flip, rate), so it is shared by every method and every ratio.
    """
    rng = seeding.numpy_rng(clean.seed, "noise", label_key(f"{flip}|{rate!r}"))
    attacker = clean.opt_clean.w if attacker_w is None else np.asarray(attacker_w, dtype=np.float64)
    score = attack_score(attacker, clean.X, clean.y_clean) if flip == "targeted" else None
    y, mask = noise.binary_flip(clean.y_clean, flip, rate, rng, score=score, rare=clean.rare)
    opt = solve(clean.X, y, lam) if mask.any() else clean.opt_clean
    ratio = clean.info["ratio"]
    return Problem(X=clean.X, y=y, y_clean=clean.y_clean, corrupt=mask, rare=clean.rare,
                   X_test=clean.X_test, y_test=clean.y_test, opt=opt, opt_clean=clean.opt_clean,
                   seed=clean.seed, key=label_key(f"ratio={ratio}|{flip}|{rate!r}"),
                   info={"ratio": ratio, "flip": flip, "rate": rate})


# ---------------------------------------------------------------- SGD building blocks


def step_size(t: int, lam: float, t0: float, eta_max: float) -> float:
    """eta_t = 1/(lam (t + t0)) for step t = 0, 1, ...; clamped to eta_max when eta_max > 0."""
    eta = 1.0 / (lam * (t + t0))
    return min(eta, eta_max) if eta_max > 0 else eta


def project_rows(W: np.ndarray, radius: float) -> np.ndarray:
    """Project each row of W (C, d) onto the ball ||w|| <= radius (rows inside are unchanged)."""
    nrm = np.sqrt(np.square(W).sum(axis=-1))
    return W * np.minimum(1.0, radius / np.maximum(nrm, 1e-300))[..., None]


def draw_indices(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling: index i with probability p_i for each uniform in u (any shape)."""
    cdf = np.cumsum(p)
    cdf /= cdf[-1]  # last entry exactly 1, so u < 1 never runs past the end
    return np.searchsorted(cdf, u, side="right")


def safe_weights(p: np.ndarray) -> np.ndarray:
    """1/(N p_i) where p_i > 0, 0 elsewhere (such indices are never drawn)."""
    out = np.zeros_like(p)
    pos = p > 0
    out[pos] = 1.0 / (len(p) * p[pos])
    return out


# ---------------------------------------------------------------- sampling rules

RULES = ("fixed", "loss", "gradnorm")  # fixed p, or refreshed every epoch at the chain's iterate


def refreshed_probs(rule: str, w, X, y, floor: float) -> np.ndarray:
    """Loss-IS / gradient-norm-IS distribution at iterate w: p ∝ score + floor * mean(score)
    (islab.sampling.relative_floor_probs, the floor rule shared with the deep-learning family)."""
    if rule == "loss":
        return sampling.relative_floor_probs(losses(w, X, y), floor)
    if rule == "gradnorm":
        return sampling.relative_floor_probs(example_grad_norms(w, X, y), floor)
    raise ValueError(f"rule {rule!r} is not a refreshed rule")


@dataclass
class Chains:
    """C chains: which data set each runs on and how it samples.

    data (C,) int index into the stacked data sets; rule per chain (RULES); p (C, N) the fixed
    distribution (rows of refreshed chains are ignored); reweight (C,) bool: False = plain SGD
    with weight 1 (proxies on a bootstrap sample); rngs: one Generator per chain.
    """

    data: np.ndarray
    rule: list
    p: np.ndarray
    reweight: np.ndarray
    rngs: list
    dead: np.ndarray | None = None   # (C,) bool: chains diverged before they start (NaN proxies)


@dataclass
class History:
    W: np.ndarray      # (E+1, C, d): iterate after each epoch, W[0] = the start (0); NaN once diverged
    P_mass: np.ndarray | None  # (E, C): mass of epoch e's distribution on corrupted examples
    diverged_epoch: np.ndarray | None = None  # (C,) first epoch with a non-finite iterate, 0 = never


def _epoch_probs(chains: Chains, W, Xs, ys, floor):
    """(C, N) distributions for this epoch: fixed rows, or refreshed at each chain's iterate."""
    P = chains.p.copy()
    for c, rule in enumerate(chains.rule):
        if rule != "fixed" and np.isfinite(W[c]).all():   # a diverged chain keeps its last p
            P[c] = refreshed_probs(rule, W[c], Xs[chains.data[c]], ys[chains.data[c]], floor)
    return P


def safe_cap(p, X, reweight: bool, scale: float) -> float:
    """scale / max_i (w_i L_i) over the support of p, L_i = 2 ||x_i||^2 (smoothness of phi_i).

    A single weighted step on example i with eta <= 1/(w_i L_i) never overshoots that term's
    minimiser along x_i; scale = 1 is that largest safe step (Needell et al.'s 1/sup L_i/(N p_i)).
    """
    L = 2.0 * np.square(X).sum(axis=1)
    w = safe_weights(p) if reweight else (p > 0).astype(np.float64)
    return scale / float(np.max(w * L))


@np.errstate(over="ignore", invalid="ignore")   # a diverging chain overflows; it is recorded, not warned
def run_chains(Xs, ys, chains: Chains, lam: float, t0: float, eta_max: float, epochs: int,
               batch: int = 1, floor: float = sampling.IS_FLOOR, corrupt=None, chunk: int = 128,
               safe: float = 0.0) -> History:
    """Advance C importance-sampled SGD chains together (one numpy update per step).

    Xs (D, N, d), ys (D, N): stacked data sets sharing one shape; corrupt (D, N) bool,
    optional, to log each epoch's sampling mass on the corrupted examples.  An epoch is
    N // batch steps; step t uses eta_t (`step_size`, t counted over all epochs) and every
    iterate is projected onto ||w|| <= 1/sqrt(lam).  Per epoch each chain draws all its
    (steps, batch) uniforms from its own Generator and maps them through its distribution;
    the gathers are done `chunk` steps at a time.
    """
    Xs = np.asarray(Xs, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    D, N, d = Xs.shape
    C = len(chains.data)
    assert chains.p.shape == (C, N) and len(chains.rule) == C == len(chains.rngs) == len(chains.reweight)
    assert all(r in RULES for r in chains.rule), f"rules must be in {RULES}"
    assert 1 <= batch <= N, "batch must lie in [1, N]"
    steps = N // batch
    radius = ball_radius(lam)
    r2 = radius * radius
    W = np.zeros((C, d))
    diverged = np.zeros(C, dtype=np.int64)
    if chains.dead is not None:
        W[chains.dead] = np.nan
        diverged[chains.dead] = 1
    W_hist = np.zeros((epochs + 1, C, d))
    W_hist[0] = W
    mass = np.zeros((epochs, C)) if corrupt is not None else None
    rows = np.arange(C)
    t = 0
    for e in range(epochs):
        P = _epoch_probs(chains, W, Xs, ys, floor)
        if mass is not None:
            mass[e] = [sampling.mass_on(P[c], corrupt[chains.data[c]]) for c in range(C)]
        weight = np.array([safe_weights(P[c]) if chains.reweight[c] else np.ones(N) for c in range(C)])
        cap = np.full(C, np.inf if eta_max <= 0 else eta_max)
        if safe > 0:
            cap = np.minimum(cap, [safe_cap(P[c], Xs[chains.data[c]], chains.reweight[c], safe)
                                   for c in range(C)])
        # (C, steps, batch) indices, each chain from its own stream -> (steps, C, batch)
        idx = np.stack([draw_indices(P[c], chains.rngs[c].random((steps, batch))) for c in range(C)])
        idx = idx.transpose(1, 0, 2)
        for s0 in range(0, steps, chunk):
            ib = idx[s0:s0 + chunk]                                   # (S, C, b)
            at = (chains.data[None, :, None], ib)
            yx = ys[at][..., None] * Xs[at]                           # (S, C, b, d): y_i x_i
            cw = (-2.0 / batch) * weight[rows[None, :, None], ib]     # (S, C, b): -2 w_i / b
            for s in range(len(ib)):
                v = yx[s]                                             # (C, b, d)
                # per-chain products as stacked matmuls: each chain's numbers come from the same
                # small product whatever the number of chains (a chain alone == in a batch)
                m = np.matmul(v, W[:, :, None])[..., 0]               # (C, b) margins
                coef = cw[s] * np.maximum(0.0, 1.0 - m)               # (C, b)
                g = np.matmul(coef[:, None, :], v)[:, 0, :]           # (C, d) weighted loss gradient
                g += lam * W
                eta = np.minimum(step_size(t, lam, t0, 0.0), cap)     # (C,)
                W = W - eta[:, None] * g
                n2 = np.einsum("cd,cd->c", W, W)
                # project the rows outside the ball (rows inside scale by 1.0); a diverged
                # (NaN) row compares False and stays NaN without touching the others
                if (n2 > r2).any():
                    W *= np.minimum(1.0, radius / np.sqrt(n2))[:, None]
                t += 1
        # the projection bounds every finite iterate; a step size that overflows (e.g. a tiny
        # t0) makes a chain non-finite: it is recorded as diverged at this epoch, never dropped
        bad = ~np.isfinite(W).all(axis=1)
        diverged[bad & (diverged == 0)] = e + 1
        W[bad] = np.nan
        W_hist[e + 1] = W
    return History(W=W_hist, P_mass=mass, diverged_epoch=diverged)


def reference_chain(X, y, rule: str, p, reweight: bool, rng, lam, t0, eta_max, epochs,
                    batch=1, floor=sampling.IS_FLOOR, safe=0.0) -> np.ndarray:
    """The plain one-chain loop that `run_chains` vectorises; returns W (E+1, d).

    Draws exactly the same uniforms from `rng` (one (steps, batch) block per epoch).
    """
    N, d = X.shape
    steps = N // batch
    w = np.zeros(d)
    out = [w.copy()]
    t = 0
    for _ in range(epochs):
        q = np.asarray(p, dtype=np.float64) if rule == "fixed" else refreshed_probs(rule, w, X, y, floor)
        cap = eta_max if eta_max > 0 else np.inf
        if safe > 0:
            cap = min(cap, safe_cap(q, X, reweight, safe))
        u = rng.random((steps, batch))
        for s in range(steps):
            g = lam * w
            for i in draw_indices(q, u[s]):
                wi = 1.0 / (N * q[i]) if reweight else 1.0
                a = max(0.0, 1.0 - y[i] * float(X[i] @ w))
                g = g + (-2.0 * a * y[i] * wi / batch) * X[i]
            w = w - min(step_size(t, lam, t0, 0.0), cap) * g
            nrm = np.linalg.norm(w)
            if nrm > ball_radius(lam):
                w = w * (ball_radius(lam) / nrm)
            t += 1
        out.append(w.copy())
    return np.array(out)


# ---------------------------------------------------------------- methods

METHODS = ("uniform", "is-norm", "partial-is", "loss-is", "grad-is", "dr-is")
METHOD_HELP = {
    "uniform": "i.i.d. uniform draws with replacement, weight 1",
    "is-norm": "p ∝ G_i, the Lipschitz bound 2(1 + ||x_i||/sqrt(lam))||x_i|| (fixed)",
    "partial-is": "p_i = 1/(2N) + G_i/(2 sum G) (Needell et al., fixed)",
    "loss-is": "p ∝ phi_i(w) + floor*mean, refreshed every epoch at the chain's iterate",
    "grad-is": "p ∝ ||grad phi_i(w)|| + floor*mean, refreshed every epoch",
    "dr-is": "p = smoothed_probs(rank variance over K linear proxies, gamma)",
}


@dataclass
class SGDConfig:
    lam: float = 1e-3          # L2 strength
    t0: float = 1000.0         # step-size offset, in steps
    eta_max: float = 0.0       # clamp on eta_t (0 = no clamp)
    epochs: int = 10
    batch: int = 1
    floor: float = sampling.IS_FLOOR  # loss-is / grad-is floor, as a fraction of the mean score
    gamma: float = 0.1         # DR-IS smoothing (docs/METHODS.md section 5)
    proxies: int = 3           # K linear proxies for DR-IS
    proxy_epochs: int = 2      # uniform-SGD epochs of each proxy
    safe: float = 0.0          # per-chain cap safe / max_i(w_i L_i) (0 = off)


def add_data_args(p, margin: float) -> None:
    """The data-generator flags shared by Convex-Noise/IS-noise.py and DR-IS/synthetic.py."""
    from islab import cli

    g = p.add_argument_group("data (two-cluster mixture, islab.convex.make_points)")
    g.add_argument("--n", type=cli.positive_int, default=1000, help="training examples N (examples)")
    g.add_argument("--n-test", type=cli.positive_int, default=2000, help="clean test examples (examples)")
    g.add_argument("--d", type=cli.positive_int, default=20,
                   help="feature dimension, number of features (no bias feature: the labelling rule passes through 0)")
    g.add_argument("--rho", type=cli.rate, default=0.1,
                   help="rare-cluster fraction of the examples, in [0, 1); exactly round(rho*N) are rare")
    g.add_argument("--margin", type=cli.nonnegative_float, default=margin,
                   help="margin of the labelling rule, in feature units before the ratio scaling "
                        "(common-cluster norms are ~1; 0 lets some rare points sit near the boundary)")
    return g


def add_sgd_args(p) -> None:
    """The SGD / sampler flags shared by Convex-Noise/IS-noise.py and DR-IS/synthetic.py."""
    from islab import cli

    g = p.add_argument_group("optimisation")
    g.add_argument("--lam", type=cli.positive_float, default=1e-2,
                   help="L2 strength lambda (objective units per ||w||^2); projection radius 1/sqrt(lambda)")
    g.add_argument("--t0", type=cli.positive_float, default=100.0,
                   help="step-size offset in steps: eta_t = 1/(lambda (t + t0))")
    g.add_argument("--eta-max", type=cli.nonnegative_float, default=0.0,
                   help="fixed clamp eta_t <= eta_max for every chain (step size; 0 = off)")
    g.add_argument("--safe-step", type=cli.nonnegative_float, default=1.0,
                   help="per-chain clamp eta_t <= safe / max_i (2||x_i||^2 / (N p_i)), re-set each epoch "
                        "from that epoch's distribution (0 = off)")
    g.add_argument("--epochs", type=cli.positive_int, default=10,
                   help="epochs (one epoch = N // batch steps)")
    g.add_argument("--batch", type=cli.positive_int, default=1, help="i.i.d. draws per step (examples)")
    g.add_argument("--floor", type=cli.nonnegative_float, default=sampling.IS_FLOOR,
                   help="loss-is / grad-is floor, as a fraction of the mean score (dimensionless; "
                        "islab.sampling.IS_FLOOR, the rule of DR-IS/online.py --is-floor too)")
    g.add_argument("--gamma", type=cli.nonnegative_float, default=0.1,
                   help="DR-IS smoothing gamma: p ∝ s + gamma*mean(s) (dimensionless)")
    g.add_argument("--proxies", type=cli.positive_int, default=3, help="K linear proxies for DR-IS")
    g.add_argument("--proxy-epochs", type=cli.positive_int, default=2,
                   help="uniform-SGD epochs of each proxy (on its bootstrap resample; same lambda "
                        "and schedule)")


def check_args(args, problems_of=None) -> None:
    """Checks shared by Convex-Noise and DR-IS/synthetic, before any folder exists (UsageError):
    dr-is needs K >= 2 proxies (a rank variance over one proxy is 0), and every exact optimum
    must be computable (`problems_of()` builds every problem of the run; a too small --lam
    makes the Newton system singular)."""
    from islab.cli import UsageError

    if "dr-is" in args.methods and args.proxies < 2:
        raise UsageError(f"dr-is needs at least 2 proxies (a rank disagreement over one is 0); "
                         f"got --proxies {args.proxies}")
    if problems_of is not None:
        try:
            problems_of()
        except SolveError as e:
            raise UsageError(str(e)) from None


def sgd_config(args) -> SGDConfig:
    """SGDConfig from the flags of add_sgd_args."""
    return SGDConfig(lam=args.lam, t0=args.t0, eta_max=args.eta_max, epochs=args.epochs,
                     batch=args.batch, floor=args.floor, gamma=args.gamma, proxies=args.proxies,
                     proxy_epochs=args.proxy_epochs, safe=args.safe_step)


def proxy_losses(problems, cfg: SGDConfig) -> np.ndarray:
    """Train K linear proxies per problem (one vectorised run) and return their losses (P, K, N).

    Proxy k of a problem runs plain uniform SGD (weight 1, same lam and schedule) for
    cfg.proxy_epochs epochs on its own bootstrap resample of the corrupted training set
    (drawing i with probability count_i / N is exactly sampling from that resample); the
    bootstrap counts and the draws come from purpose 'proxy' keyed by (problem, k).
    """
    P, K = len(problems), cfg.proxies
    N = len(problems[0].y)
    Xs = np.stack([pr.X for pr in problems])
    ys = np.stack([pr.y for pr in problems])
    probs, rngs = [], []
    for pr in problems:
        for k in range(K):
            rng = seeding.numpy_rng(pr.seed, "proxy", pr.key, k)
            probs.append(np.bincount(rng.integers(0, N, N), minlength=N) / N)
            rngs.append(rng)
    chains = Chains(data=np.repeat(np.arange(P), K), rule=["fixed"] * (P * K), p=np.array(probs),
                    reweight=np.zeros(P * K, dtype=bool), rngs=rngs)
    W = run_chains(Xs, ys, chains, cfg.lam, cfg.t0, cfg.eta_max, cfg.proxy_epochs, cfg.batch,
                   safe=cfg.safe).W[-1]
    return np.array([[losses(W[p * K + k], problems[p].X, problems[p].y) for k in range(K)]
                     for p in range(P)])


def dr_is_probs(proxy_loss: np.ndarray, gamma: float) -> np.ndarray:
    """DR-IS distribution from (K, N) proxy losses: smoothed rank variance (1/K normalisation)."""
    from islab import scores  # scores pulls in scipy.stats (0.6 s); only DR-IS needs it

    s = scores.rank_variance(scores.normalised_ranks(proxy_loss))
    # the variance of K equal ranks comes out as ~1e-33, not 0; such round-off would otherwise
    # decide the whole distribution when every proxy agrees (s in [0, 1/4], so 1e-12 is noise)
    s = np.where(s < 1e-12, 0.0, s)
    return sampling.smoothed_probs(s, gamma)


def method_chains(problems, methods, cfg: SGDConfig) -> Chains:
    """One chain per (problem, method), problem-major; sampler stream keyed by (problem, method)."""
    N = len(problems[0].y)
    need_proxies = "dr-is" in methods
    pl = proxy_losses(problems, cfg) if need_proxies else None
    data, rule, probs, rngs, dead = [], [], [], [], []
    for p, pr in enumerate(problems):
        G = gradient_bound(pr.X, cfg.lam)
        for m in methods:
            assert m in METHODS, f"unknown method {m!r}"
            # a diverged proxy has no losses: its DR-IS chain is recorded as diverged
            dead.append(m == "dr-is" and not np.isfinite(pl[p]).all())
            if m == "is-norm":
                q = sampling.proportional_probs(G)
            elif m == "partial-is":
                q = sampling.partially_biased_probs(G)
            elif m == "dr-is" and dead[-1]:
                q = sampling.uniform_probs(N)
            elif m == "dr-is":
                q = dr_is_probs(pl[p], cfg.gamma)
            else:  # uniform; loss-is / grad-is start from it (their rows are refreshed anyway)
                q = sampling.uniform_probs(N)
            data.append(p)
            rule.append({"loss-is": "loss", "grad-is": "gradnorm"}.get(m, "fixed"))
            probs.append(q)
            rngs.append(seeding.numpy_rng(pr.seed, "sampler", pr.key, METHODS.index(m)))
    return Chains(data=np.array(data), rule=rule, p=np.array(probs),
                  reweight=np.ones(len(data), dtype=bool), rngs=rngs, dead=np.array(dead, dtype=bool))


METRICS = ("dist_train", "dist_clean", "gap", "test_err_pct", "mass_corrupt", "diverged")


def chain_metrics(hist: History, problems, chains: Chains, lam: float) -> dict:
    """Per-epoch metrics of every chain, each an array (E+1, C).

    dist_train = ||w - w*|| (corrupted objective), dist_clean = ||w - w*_clean||,
    gap = F(w) - F(w*) on the corrupted training objective, test_err_pct = clean test error in %,
    mass_corrupt = mass of the epoch's distribution on corrupted examples (NaN at epoch 0),
    diverged = 1 from the epoch a chain's iterate became non-finite (its other metrics are NaN
    from then on), else 0.
    """
    E1, C, d = hist.W.shape
    out = {k: np.full((E1, C), np.nan) for k in METRICS}
    for p, pr in enumerate(problems):
        cs = np.flatnonzero(chains.data == p)
        if len(cs) == 0:
            continue
        Wp = hist.W[:, cs]                                   # (E+1, k, d)
        out["dist_train"][:, cs] = np.linalg.norm(Wp - pr.opt.w, axis=-1)
        out["dist_clean"][:, cs] = np.linalg.norm(Wp - pr.opt_clean.w, axis=-1)
        m = pr.y[:, None, None] * np.einsum("nd,ekd->nek", pr.X, Wp)
        F = np.square(np.maximum(0.0, 1.0 - m)).mean(axis=0) + 0.5 * lam * np.square(Wp).sum(-1)
        out["gap"][:, cs] = F - pr.opt.value
        mt = pr.y_test[:, None, None] * np.einsum("nd,ekd->nek", pr.X_test, Wp)
        out["test_err_pct"][:, cs] = 100.0 * (mt <= 0).mean(axis=0)
        if hist.P_mass is not None:
            out["mass_corrupt"][1:, cs] = hist.P_mass[:, cs]
        bad = ~np.isfinite(Wp).all(axis=-1)                  # (E+1, k): diverged by then
        for k in METRICS[:-1]:
            out[k][:, cs] = np.where(bad, np.nan, out[k][:, cs])
        out["diverged"][:, cs] = bad.astype(np.float64)
    return out


def run_methods(problems, methods, cfg: SGDConfig) -> dict:
    """Every method on every problem as one vectorised run; returns metrics (E+1, P, M) each."""
    chains = method_chains(problems, methods, cfg)
    Xs = np.stack([pr.X for pr in problems])
    ys = np.stack([pr.y for pr in problems])
    hist = run_chains(Xs, ys, chains, cfg.lam, cfg.t0, cfg.eta_max, cfg.epochs, cfg.batch,
                      cfg.floor, corrupt=np.stack([pr.corrupt for pr in problems]), safe=cfg.safe)
    met = chain_metrics(hist, problems, chains, cfg.lam)
    P, M = len(problems), len(methods)
    return {k: v.reshape(cfg.epochs + 1, P, M) for k, v in met.items()}


def long_format(metrics: dict, problem_cols: dict, methods) -> dict:
    """{metric: (E+1, P, M)} -> the columns of a tidy long table (one row per value).

    problem_cols maps column name -> P per-problem values (e.g. flip, rate, seed); the result
    adds method, epoch, metric and value.  Non-finite values (the mass at epoch 0, before any
    distribution exists) are left out.
    """
    cols = {k: [] for k in [*problem_cols, "method", "epoch", "metric", "value"]}
    for name, v in metrics.items():
        e, p, m = np.meshgrid(*(np.arange(s) for s in v.shape), indexing="ij")
        keep = np.isfinite(v)
        for k, vals in problem_cols.items():
            cols[k].append(np.asarray(vals)[p[keep]])
        cols["method"].append(np.asarray(methods)[m[keep]])
        cols["epoch"].append(e[keep])
        cols["metric"].append(np.full(keep.sum(), name))
        cols["value"].append(v[keep])
    return {k: np.concatenate(c) for k, c in cols.items()}
