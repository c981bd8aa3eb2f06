"""Resampling-reweighting (RR) beyond convexity: the three examples of An & Ying (seed 001) as
vectorised chains (docs/METHODS.md section 1: "the RR scheme of An & Ying is this same estimator").

Every problem is a finite sum with population proportions a_i (sum 1):

    F(x) = sum_i a_i f_i(x),    one step:  x <- x - eta * (a_i / p_i) * grad f_i(x),  i ~ p,

unbiased for grad F for any p > 0 (`expected_step` enumerates it).  The schemes:

  sgd       p = a: draw the population as it is; weight 1 (vanilla SGD)
  rr        p_i ∝ a_i L_i, L_i a fixed bound on ||grad f_i|| (its Lipschitz constant): weight
            a_i / p_i ∝ 1 / L_i.  Their Section 2: "reweight each subgroup by the reciprocal of
            its Lipschitz constant" and resample it in proportion.
  rr-local  p_i ∝ a_i ||grad f_i(x)|| at the current iterate (their general scheme, Section 3.1).

The three problems (parameters are ours; theirs were lost in extraction; Convex-Noise/README.md
justifies each choice):

  TwoWell          their Section 2: two subgroups with piecewise-linear losses, a sharp global
                   minimum at x = -1 and a flat local one at x = +1.  `stationary_log_density` is
                   the Gibbs-type density of their Lemma 2.1 for ANY scheme (derivation in the
                   README), `diffusion_chains` simulates the diffusion it comes from.
  WelschRegression their Section 4.1.2: a Welsch-loss regression with a sensitive (large
                   features) and an insensitive subgroup; `stability_threshold` is their Lemma 3.2.
  MuellerBrown     their Section 4.2: the Mueller-Brown potential (standard parameters, Mueller &
                   Brown 1979) written as a sum of its four Gaussian terms with proportions a_k.

`run_chains` advances C chains together, one numpy update per step; each chain draws from its
own numpy Generator (blocks of `block` steps), so a chain's numbers never depend on which other
chains share the run; `reference_chain` is the plain loop it must reproduce.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SCHEMES = ("sgd", "rr", "rr-local")
SCHEME_HELP = {
    "sgd": "p = a (the population proportions), weight 1: vanilla SGD",
    "rr": "p_i ∝ a_i L_i (L_i = Lipschitz bound of term i), weight a_i/p_i ∝ 1/L_i",
    "rr-local": "p_i ∝ a_i ||grad f_i(x)|| at the current iterate, weight a_i/p_i",
}


# ---------------------------------------------------------------- the estimator


def fixed_probs(problem, scheme: str) -> np.ndarray:
    """(n,) sampling distribution of a fixed scheme ('sgd' or 'rr')."""
    a = np.asarray(problem.a, dtype=np.float64)
    if scheme == "sgd":
        return a / a.sum()
    if scheme == "rr":
        L = np.asarray(problem.lipschitz, dtype=np.float64)
        assert np.all(L > 0), "rr needs a positive Lipschitz bound for every term"
        q = a * L
        return q / q.sum()
    raise ValueError(f"{scheme!r} is not a fixed scheme")


def local_probs(problem, G: np.ndarray) -> np.ndarray:
    """(C, n) rr-local distribution from all term gradients G (C, n, d): p ∝ a_i ||grad f_i||.

    Where every term gradient is zero (a common stationary point of all terms) p falls back to a.
    """
    a = np.asarray(problem.a, dtype=np.float64)
    q = a * np.sqrt(np.square(G).sum(-1))
    tot = q.sum(-1, keepdims=True)
    return np.where(tot > 0, q / np.where(tot > 0, tot, 1.0), a / a.sum())


def expected_step(problem, X: np.ndarray, scheme: str) -> np.ndarray:
    """E_i[(a_i / p_i) grad f_i(x)] by enumeration, (C, d): equals grad F for every scheme."""
    G = problem.all_term_grads(X)                                   # (C, n, d)
    a = np.asarray(problem.a, dtype=np.float64)
    P = local_probs(problem, G) if scheme == "rr-local" else np.broadcast_to(fixed_probs(problem, scheme),
                                                                              G.shape[:2])
    W = np.where(P > 0, a / np.where(P > 0, P, 1.0), 0.0)           # never drawn where p = 0
    return np.einsum("cn,cn,cnd->cd", P, W, G)


def step_moments(problem, X: np.ndarray, scheme: str):
    """Mean (C, d) and trace of the covariance (C,) of one step's direction (a_i/p_i) grad f_i."""
    G = problem.all_term_grads(X)
    a = np.asarray(problem.a, dtype=np.float64)
    P = local_probs(problem, G) if scheme == "rr-local" else np.broadcast_to(fixed_probs(problem, scheme),
                                                                              G.shape[:2])
    W = np.where(P > 0, a / np.where(P > 0, P, 1.0), 0.0)
    V = W[..., None] * G
    mean = np.einsum("cn,cnd->cd", P, V)
    second = np.einsum("cn,cnd->c", P, np.square(V))
    return mean, second - np.square(mean).sum(-1)


def _draw(cdf_or_P, u: np.ndarray) -> np.ndarray:
    """Indices for uniforms u (C,): from one cdf (n,) shared by all chains, or per-chain P (C, n)."""
    if cdf_or_P.ndim == 1:
        return np.minimum(np.searchsorted(cdf_or_P, u, side="right"), len(cdf_or_P) - 1)
    cdf = np.cumsum(cdf_or_P, axis=1)
    idx = (u[:, None] * cdf[:, -1:] >= cdf).sum(axis=1)
    return np.minimum(idx, cdf_or_P.shape[1] - 1)


def _uniform_blocks(rngs, steps: int, block: int):
    """Yield (first step, (S, C) uniforms), each chain's column from its own generator."""
    for s0 in range(0, steps, block):
        S = min(block, steps - s0)
        yield s0, np.stack([r.random(S) for r in rngs], axis=1)


def run_chains(problem, scheme: str, X0, eta, steps: int, rngs, block: int = 1024,
               record_every: int = 0, record=None) -> np.ndarray:
    """Advance C chains of one scheme for `steps` steps; returns the final iterates (C, d).

    X0 (C, d) starts; eta scalar or (C,) step sizes; rngs one numpy Generator per chain.  Every
    iterate is clipped to problem.box (lo, hi) when the problem has one.  record(step, X) is called
    after every `record_every`-th step (step counted from 1).
    """
    assert scheme in SCHEMES, f"scheme must be one of {SCHEMES}"
    X = np.array(X0, dtype=np.float64, copy=True)
    C = len(X)
    assert len(rngs) == C, "one generator per chain"
    eta = np.broadcast_to(np.asarray(eta, dtype=np.float64), (C,))[:, None]
    a = np.asarray(problem.a, dtype=np.float64)
    box = getattr(problem, "box", None)
    rows = np.arange(C)
    if scheme != "rr-local":
        p = fixed_probs(problem, scheme)
        cdf = np.cumsum(p)
        cdf /= cdf[-1]
        wt = np.where(p > 0, a / np.where(p > 0, p, 1.0), 0.0)
    for s0, U in _uniform_blocks(rngs, steps, block):
        for s in range(len(U)):
            if scheme == "rr-local":
                G = problem.all_term_grads(X)                     # (C, n, d)
                P = local_probs(problem, G)
                i = _draw(P, U[s])
                g = G[rows, i] * (a[i] / P[rows, i])[:, None]
            else:
                i = _draw(cdf, U[s])
                g = problem.term_grads(X, i) * wt[i][:, None]
            X = X - eta * g
            if box is not None:
                X = np.clip(X, box[0], box[1])
            t = s0 + s + 1
            if record is not None and record_every and t % record_every == 0:
                record(t, X)
    return X


def reference_chain(problem, scheme: str, x0, eta: float, steps: int, rng, block: int = 1024) -> np.ndarray:
    """The plain one-chain loop that `run_chains` vectorises (same uniforms); final x (d,)."""
    x = np.array(x0, dtype=np.float64, copy=True)
    a = np.asarray(problem.a, dtype=np.float64)
    box = getattr(problem, "box", None)
    n = len(a)
    for s0 in range(0, steps, block):
        u = rng.random(min(block, steps - s0))
        for us in u:
            G = problem.all_term_grads(x[None])[0]                 # (n, d)
            if scheme == "rr-local":
                p = local_probs(problem, G[None])[0]
                c = np.cumsum(p)
                i = min(int(np.sum(us * c[-1] >= c)), n - 1)
            else:
                p = fixed_probs(problem, scheme)
                c = np.cumsum(p)
                i = min(int(np.searchsorted(c / c[-1], us, side="right")), n - 1)
            x = x - eta * ((a[i] / p[i]) * G[i])
            if box is not None:
                x = np.clip(x, box[0], box[1])
    return x


def descend(problem, X, step: float, iters: int) -> np.ndarray:
    """Full-gradient descent (projected onto the box if any): which basin a point belongs to."""
    X = np.array(X, dtype=np.float64, copy=True)
    box = getattr(problem, "box", None)
    for _ in range(iters):
        X = X - step * problem.grad(X)
        if box is not None:
            X = np.clip(X, box[0], box[1])
    return X


def nearest_minimum(X, minima, tol: float) -> np.ndarray:
    """(C,) index of the minimum (rows of `minima`, (M, d)) within tol of each point, else -1."""
    d = np.linalg.norm(np.asarray(X)[:, None, :] - np.asarray(minima)[None], axis=-1)
    return np.where(d.min(1) <= tol, d.argmin(1), -1)


# ---------------------------------------------------------------- (a) the two-subgroup example


@dataclass
class TwoWell:
    """Two subgroups on a line (their Section 2, our parameters).

        f1(x) = k1 |x + 1|       (x <= 0),   k1 + eps x   (x > 0)     sensitive, proportion a1
        f2(x) = k2 - eps x       (x < 0),    k2 |x - 1|   (x >= 0)    insensitive, 1 - a1

    Each term pulls toward its own minimum, steeply (k_i) near it and with slope eps beyond 0 (the
    eps terms let a chain cross 0; without them nothing drives it over).  F = a1 f1 + a2 f2 has
    minima at -1 and +1 and a maximum at 0; F(-1) = a2 (k2 + eps) < F(1) = a1 (k1 + eps) makes the
    sharp well at -1 the global minimum when a1 k1 > a2 k2.  The slopes are constant on the four
    regions (-inf, -1), (-1, 0), (0, 1), (1, inf): `slopes()` is the (2, 4) table.
    """

    a1: float = 0.5
    k1: float = 8.0
    k2: float = 1.0
    eps: float = 0.3
    EDGES = (-1.0, 0.0, 1.0)

    @property
    def a(self) -> np.ndarray:
        return np.array([self.a1, 1.0 - self.a1])

    @property
    def lipschitz(self) -> np.ndarray:
        return np.array([max(self.k1, self.eps), max(self.k2, self.eps)])

    def slopes(self) -> np.ndarray:
        k1, k2, e = self.k1, self.k2, self.eps
        return np.array([[-k1, k1, e, e], [-e, -e, -k2, k2]])

    @staticmethod
    def region(x) -> np.ndarray:
        return np.searchsorted(np.array(TwoWell.EDGES), np.asarray(x, dtype=np.float64), side="right")

    def term_losses(self, x) -> np.ndarray:
        """(..., 2) f1, f2 at x (any shape)."""
        x = np.asarray(x, dtype=np.float64)
        f1 = np.where(x <= 0, self.k1 * np.abs(x + 1), self.k1 + self.eps * x)
        f2 = np.where(x < 0, self.k2 - self.eps * x, self.k2 * np.abs(x - 1))
        return np.stack([f1, f2], -1)

    def loss(self, x) -> np.ndarray:
        return self.term_losses(x) @ self.a

    def term_grads(self, X, idx) -> np.ndarray:
        return self.slopes()[idx, self.region(X[:, 0])][:, None]

    def all_term_grads(self, X) -> np.ndarray:
        return self.slopes()[:, self.region(X[:, 0])].T[..., None]  # (C, 2, 1)

    def grad(self, X) -> np.ndarray:
        return (self.a @ self.slopes())[self.region(X[:, 0])][:, None]

    def region_moments(self, scheme: str):
        """Per region (4,): mean m_r (= F') and variance s2_r of one step's direction under a
        fixed scheme.  SGD: s2 = a1 a2 (g1 - g2)^2, the variances of their Appendix A."""
        p = fixed_probs(self, scheme)
        V = (self.a / p)[:, None] * self.slopes()                   # (2, 4) weighted directions
        m = p @ V
        return m, p @ np.square(V) - np.square(m)


def stationary_log_density(x, m, s2, eta: float) -> np.ndarray:
    """Lemma 2.1 for any scheme: log of the (unnormalised) stationary density at x of the diffusion

        dX = -m(X) dt + sqrt(eta s2(X)) dW      (Ito; m, s2 constant on the four regions),

    rho(x) ∝ (1 / D(x)) exp(-int_0^x m / D),  D = eta s2 / 2.  The 1/D prefactor makes D rho
    continuous at the region edges (zero probability flux); derivation in Convex-Noise/README.md.
    """
    x = np.asarray(x, dtype=np.float64)
    m, s2 = np.asarray(m, dtype=np.float64), np.asarray(s2, dtype=np.float64)
    D = eta * s2 / 2.0
    k = m / D                                                       # slope of the exponent per region
    phi_m1, phi_p1 = -k[1], k[2]                                    # int_0^{-1} m/D, int_0^{1} m/D
    r = TwoWell.region(x)
    phi = np.select([r == 0, r == 1, r == 2],
                    [phi_m1 + k[0] * (x + 1.0), k[1] * x, k[2] * x], phi_p1 + k[3] * (x - 1.0))
    return -np.log(D[r]) - phi


def region_log_masses(m, s2, eta: float) -> np.ndarray:
    """(4,) log of the unnormalised stationary mass of each region (closed form of the integral
    of exp(stationary_log_density) over it); needs m_0 < 0 and m_3 > 0 (confining tails)."""
    m, s2 = np.asarray(m, dtype=np.float64), np.asarray(s2, dtype=np.float64)
    assert m[0] < 0 < m[3], "the outer regions must push back toward the wells"
    D = eta * s2 / 2.0
    k = m / D
    phi = {-1.0: -k[1], 0.0: 0.0, 1.0: k[2]}                        # exponent at the edges

    def log_int(lo, hi, kr):  # log int_lo^hi exp(-phi(lo) - kr (x - lo)) dx, finite piece
        # = -phi(lo) + log((1 - exp(-kr (hi - lo))) / kr), written stably for either sign of kr
        z = -kr * (hi - lo)
        if kr > 0:
            return -phi[lo] + np.log(-np.expm1(z)) - np.log(kr)
        return -phi[lo] + z + np.log(-np.expm1(-z)) - np.log(-kr)

    out = np.empty(4)
    out[0] = -phi[-1.0] - np.log(-k[0])                             # int_{-inf}^{-1}
    out[1] = log_int(-1.0, 0.0, k[1])
    out[2] = log_int(0.0, 1.0, k[2])
    out[3] = -phi[1.0] - np.log(k[3])                               # int_1^{inf}
    return out - np.log(D)


def left_mass(m, s2, eta: float) -> float:
    """Predicted stationary probability of x < 0 (the well of the global minimum)."""
    lm = region_log_masses(m, s2, eta)
    top = lm.max()
    w = np.exp(lm - top)
    return float(w[:2].sum() / w.sum())


def diffusion_chains(tw: TwoWell, scheme: str, X0, eta: float, steps: int, rngs, substeps: int = 4,
                     block: int = 256, record_every: int = 0, record=None) -> np.ndarray:
    """Euler-Maruyama for the diffusion of `stationary_log_density`: `substeps` steps of
    dt = eta / substeps per SGD step (substeps = 1: the Gaussian surrogate with the same mean and
    variance as one SGD step).  Per-chain normals from each chain's generator; returns X (C, 1)."""
    m, s2 = tw.region_moments(scheme)
    sd = np.sqrt(s2)
    x = np.array(X0, dtype=np.float64)[:, 0].copy()
    dt = eta / substeps
    for s0 in range(0, steps, block):
        S = min(block, steps - s0)
        Z = np.stack([r.standard_normal(S * substeps) for r in rngs], axis=1)   # (S*substeps, C)
        for s in range(S):
            for j in range(substeps):
                r = TwoWell.region(x)
                x = x - dt * m[r] + np.sqrt(eta * dt) * sd[r] * Z[s * substeps + j]
            t = s0 + s + 1
            if record is not None and record_every and t % record_every == 0:
                record(t, x[:, None])
    return x[:, None]


# ---------------------------------------------------------------- (b) Welsch-loss regression


@dataclass
class WelschRegression:
    """1-D robust regression, f_i(b) = c^2 (1 - exp(-r_i^2 / (2 c^2))), r_i = y_i - b x_i, a_i = 1/N.

    grad f_i(b) = -x_i r_i exp(-r_i^2 / (2 c^2)); |grad f_i| <= L_i = |x_i| c exp(-1/2) (the
    maximum of |r| exp(-r^2/2c^2) is at |r| = c), the bound the rr scheme uses.  Each f_i is
    c^2-bounded, so a group of points defines a well of depth ~ (its share) c^2 and of width
    ~ c / |x|: large features make it sharp.
    """

    x: np.ndarray
    y: np.ndarray
    c: float
    group: np.ndarray = field(default=None)      # (N,) names, for reports
    box: tuple | None = None

    @property
    def a(self) -> np.ndarray:
        return np.full(len(self.x), 1.0 / len(self.x))

    @property
    def lipschitz(self) -> np.ndarray:
        return np.abs(self.x) * self.c * np.exp(-0.5)

    def residuals(self, B) -> np.ndarray:
        return self.y - np.multiply.outer(np.asarray(B, dtype=np.float64), self.x)

    def loss(self, B) -> np.ndarray:
        """F at each b (any shape)."""
        r = self.residuals(B)
        return (self.c ** 2 * -np.expm1(-r * r / (2 * self.c ** 2))).mean(-1)

    def _dpsi(self, r):
        return r * np.exp(-r * r / (2 * self.c ** 2))

    def term_grads(self, X, idx) -> np.ndarray:
        r = self.y[idx] - X[:, 0] * self.x[idx]
        return (-self.x[idx] * self._dpsi(r))[:, None]

    def all_term_grads(self, X) -> np.ndarray:
        r = self.residuals(X[:, 0])                               # (C, N)
        return (-self.x * self._dpsi(r))[..., None]

    def grad(self, X) -> np.ndarray:
        return self.all_term_grads(X).mean(1)

    def curvatures(self, b: float) -> np.ndarray:
        """h_i = f_i''(b) = x_i^2 (1 - r_i^2/c^2) exp(-r_i^2/(2c^2)), (N,)."""
        r = self.residuals(b)
        return self.x ** 2 * (1 - r * r / self.c ** 2) * np.exp(-r * r / (2 * self.c ** 2))

    def smoothness(self) -> float:
        """A bound on |F''|: mean x_i^2 (|psi''| <= 1)."""
        return float(np.mean(self.x ** 2))


def make_welsch(n_sensitive: int, n_clean: int, n_corrupt: int, scale: float, beta_true: float,
                beta_bad: float, noise: float, c: float, rng) -> WelschRegression:
    """Two subgroups (features u ~ U[0.5, 1.5]): `n_sensitive` points with x = scale * u and
    responses y = beta_true x + noise; an insensitive group with x = u, of which `n_clean` respond
    with beta_true and `n_corrupt` with beta_bad (a systematic corruption of that group)."""
    n = n_sensitive + n_clean + n_corrupt
    u = rng.uniform(0.5, 1.5, n)
    x = np.where(np.arange(n) < n_sensitive, scale * u, u)
    beta = np.where(np.arange(n) < n_sensitive + n_clean, beta_true, beta_bad)
    y = beta * x + noise * rng.standard_normal(n)
    group = np.array(["sensitive"] * n_sensitive + ["insensitive-clean"] * n_clean
                     + ["insensitive-corrupt"] * n_corrupt)
    return WelschRegression(x=x, y=y, c=c, group=group)


def minima_1d(loss, lo: float, hi: float, grid: int = 20001) -> np.ndarray:
    """Local minima of a 1-D function on [lo, hi]: grid scan, then golden-section refinement."""
    b = np.linspace(lo, hi, grid)
    f = loss(b)
    out = []
    for i in np.flatnonzero((f[1:-1] < f[:-2]) & (f[1:-1] <= f[2:])) + 1:
        left, right = b[i - 1], b[i + 1]
        g = (np.sqrt(5) - 1) / 2
        for _ in range(80):
            m1, m2 = right - g * (right - left), left + g * (right - left)
            if loss(np.array(m1)) < loss(np.array(m2)):
                right = m2
            else:
                left = m1
        out.append((left + right) / 2)
    return np.array(out)


def stability_threshold(h, a, p) -> float:
    """Largest eta for which a step of weight a_i/p_i on a term of curvature h_i (drawn with prob
    p_i) is stable in mean square near an interpolating minimum (their Lemma 3.2, 1-D):
    E_p[(1 - eta (a_i/p_i) h_i)^2] <= 1  <=>  eta <= 2 sum_i a_i h_i / sum_i (a_i^2 / p_i) h_i^2.
    SGD is p = a: 2 E[h] / E[h^2]."""
    h, a, p = (np.asarray(v, dtype=np.float64) for v in (h, a, p))
    return float(2 * np.sum(a * h) / np.sum(a * a / p * h * h))


# ---------------------------------------------------------------- (c) Mueller-Brown


# K. Mueller and L. D. Brown, Theor. Chim. Acta 53, 75-93 (1979): V = sum_k A_k exp(a_k (x-x0_k)^2
# + b_k (x-x0_k)(y-y0_k) + c_k (y-y0_k)^2), the standard parameters.
MB_A = np.array([-200.0, -100.0, -170.0, 15.0])
MB_a = np.array([-1.0, -1.0, -6.5, 0.7])
MB_b = np.array([0.0, 0.0, 11.0, 0.6])
MB_c = np.array([-10.0, -10.0, -6.5, 0.7])
MB_X0 = np.array([1.0, 0.0, -0.5, -1.0])
MB_Y0 = np.array([0.0, 0.5, 1.5, 1.0])
# the literature's stationary points (x, y, V), rounded as usually quoted: minima A (global), B, C
MB_MINIMA = np.array([[-0.558, 1.442, -146.70], [0.623, 0.028, -108.17], [-0.050, 0.467, -80.77]])
MB_SADDLES = np.array([[-0.822, 0.624, -40.66], [0.212, 0.293, -72.25]])


def mb_terms(P):
    """The four terms V_k (..., 4) and their gradients (..., 4, 2) at points P (..., 2)."""
    P = np.asarray(P, dtype=np.float64)
    dx = P[..., 0:1] - MB_X0
    dy = P[..., 1:2] - MB_Y0
    E = MB_A * np.exp(MB_a * dx * dx + MB_b * dx * dy + MB_c * dy * dy)
    return E, np.stack([E * (2 * MB_a * dx + MB_b * dy), E * (MB_b * dx + 2 * MB_c * dy)], -1)


def mb_potential(P) -> np.ndarray:
    return mb_terms(P)[0].sum(-1)


def mb_gradient(P) -> np.ndarray:
    return mb_terms(P)[1].sum(-2)


def mb_hessian(p) -> np.ndarray:
    """(2, 2) Hessian of V at one point (analytic)."""
    dx, dy = p[0] - MB_X0, p[1] - MB_Y0
    E = MB_A * np.exp(MB_a * dx * dx + MB_b * dx * dy + MB_c * dy * dy)
    gx, gy = 2 * MB_a * dx + MB_b * dy, MB_b * dx + 2 * MB_c * dy
    return np.array([[np.sum(E * (gx * gx + 2 * MB_a)), np.sum(E * (gx * gy + MB_b))],
                     [np.sum(E * (gx * gy + MB_b)), np.sum(E * (gy * gy + 2 * MB_c))]])


def mb_newton(p0, iters: int = 50) -> np.ndarray:
    """A stationary point of V near p0 (Newton on grad V = 0; minima and saddles alike)."""
    p = np.array(p0, dtype=np.float64)
    for _ in range(iters):
        p = p - np.linalg.solve(mb_hessian(p), mb_gradient(p))
    return p


@dataclass
class MuellerBrown:
    """V = sum_k V_k written as F = sum_k a_k f_k with f_k = V_k / a_k (population proportions a).

    SGD draws term k with probability a_k and steps along grad V_k / a_k: a rare term is a term of
    large Lipschitz scale.  rr-local (p ∝ ||grad V_k(x)||) does not depend on a.  Iterates are
    clipped to the box (lo, hi): V_4 = 15 exp(+...) grows without bound outside it.
    """

    props: np.ndarray = field(default_factory=lambda: np.full(4, 0.25))
    box: tuple = (np.array([-1.5, -0.5]), np.array([1.2, 2.0]))

    @property
    def a(self) -> np.ndarray:
        p = np.asarray(self.props, dtype=np.float64)
        return p / p.sum()

    def term_grads(self, X, idx) -> np.ndarray:
        return self.all_term_grads(X)[np.arange(len(X)), idx]

    def all_term_grads(self, X) -> np.ndarray:
        return mb_terms(X)[1] / self.a[:, None]

    def grad(self, X) -> np.ndarray:
        return mb_gradient(X)

    def loss(self, X) -> np.ndarray:
        return mb_potential(X)
