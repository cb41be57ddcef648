"""Bradley-Terry strengths by penalised maximum likelihood, with bootstrap confidence intervals.

Model: P(i beats j) = sigmoid(s_i - s_j), strengths on the natural-log scale (evalica reports
exp(s) normalised to geometric mean 1, so `log(evalica score) == s` when `prior == 0`). A tie
(undecided judgment) counts as half a win for each side, as in evalica.

Why a prior: with a perfect judge a round robin is perfectly separable, and the plain maximum
likelihood sends the undefeated candidate to +infinity (evalica's iterations stop at a large,
iteration-count-dependent number). Each candidate therefore plays `prior` virtual games, half won,
against a phantom of strength 0. The penalised likelihood is then strictly concave, the fit is
unique and finite for any data, and in a full round robin the fitted order is exactly the order of
points won (the stationarity equations are monotone in s_i). `prior=0` gives the plain MLE, for
data where it exists.

Solver: Newton's method with backtracking on the exact gradient and Hessian; n is at most a few
dozen candidates, so an n x n solve per step is cheaper and far more precise than MM iterations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from reward_service.ranking.outcome import Outcome, ranking_from_scores, validate_matches

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class BradleyTerryResult:
    """Centred log-strengths (mean 0) with percentile-bootstrap intervals (None without
    bootstrap). `converged` is False only if Newton hit `max_iter`, which with `prior > 0` means a
    bug, and with `prior == 0` means the MLE does not exist (separable data)."""

    n: int
    scores: tuple[float, ...]
    ranking: tuple[int, ...]
    ci_low: tuple[float, ...] | None
    ci_high: tuple[float, ...] | None
    prior: float
    n_bootstrap: int
    confidence: float
    seed: int
    iterations: int
    converged: bool

    def probability(self, i: int, j: int) -> float:
        """The fitted P(i beats j)."""
        return _sigmoid(self.scores[i] - self.scores[j])


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _expit(z: FloatArray) -> FloatArray:
    """The logistic function without overflow for large |z|."""
    return np.exp(-np.logaddexp(0.0, -z))


def _points_matrix(
    n: int, xs: Sequence[int], ys: Sequence[int], a_points: FloatArray, weights: FloatArray
) -> FloatArray:
    """W[i, j] = points i took from j (wins + half ties), each match counted `weights[k]` times."""
    points = np.zeros((n, n))
    np.add.at(points, (np.asarray(xs), np.asarray(ys)), weights * a_points)
    np.add.at(points, (np.asarray(ys), np.asarray(xs)), weights * (1.0 - a_points))
    return points


def _neg_log_likelihood(s: FloatArray, points: FloatArray, prior: float) -> float:
    diff = s[:, None] - s[None, :]
    data = float(np.sum(points * np.logaddexp(0.0, -diff)))
    phantom = 0.5 * prior * float(np.sum(np.logaddexp(0.0, -s) + np.logaddexp(0.0, s)))
    return data + phantom


def _fit(
    points: FloatArray, prior: float, start: FloatArray, tolerance: float, max_iter: int
) -> tuple[FloatArray, int, bool]:
    """Newton's method on the penalised negative log-likelihood (convex; strictly if prior > 0)."""
    games = points + points.T
    s = start.copy()
    loss = _neg_log_likelihood(s, points, prior)
    for iteration in range(1, max_iter + 1):
        p = _expit(s[:, None] - s[None, :])
        q = _expit(s)
        grad = -(points.sum(axis=1) - (games * p).sum(axis=1)) - prior * (0.5 - q)
        curvature = games * p * p.T
        hessian = np.diag(curvature.sum(axis=1) + prior * q * (1.0 - q)) - curvature
        if prior > 0:
            step = -np.linalg.solve(hessian, grad)
        else:  # shift-invariant: take the minimum-norm step
            step = -np.linalg.lstsq(hessian, grad, rcond=None)[0]
        if float(np.max(np.abs(step), initial=0.0)) < tolerance:
            return s + step, iteration, True
        # Backtracking (Armijo) for the far-from-optimum steps; the slack absorbs rounding in the
        # loss, which otherwise rejects the tiny final steps of a converging Newton run.
        t, slope, slack = 1.0, float(grad @ step), 1e-12 * abs(loss)
        candidate = s + step
        new_loss = _neg_log_likelihood(candidate, points, prior)
        while new_loss > loss + 1e-4 * t * slope + slack and t > 1e-10:
            t *= 0.5
            candidate = s + t * step
            new_loss = _neg_log_likelihood(candidate, points, prior)
        s, loss = candidate, new_loss
    return s, max_iter, False


def bradley_terry(
    xs: Sequence[int],
    ys: Sequence[int],
    outcomes: Sequence[int],
    *,
    n: int | None = None,
    prior: float = 1.0,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    tolerance: float = 1e-10,
    max_iter: int = 100,
    a_points: Sequence[float] | None = None,
) -> BradleyTerryResult:
    """Fit strengths to the matches; bootstrap by resampling whole matches with replacement
    (`numpy.random.default_rng(seed)`), refitting, and taking the central `confidence` percentile
    interval of each candidate's centred strength. `n_bootstrap=0` skips the intervals.

    `a_points` (soft outcomes): what `xs[k]` scored in match k, within [0, 1], instead of 1 / 0.5
    / 0 from `outcomes`, e.g. a calibrated judge's p(A); the likelihood is then the expected one
    (a cross-entropy), still concave."""
    n, results = validate_matches(xs, ys, outcomes, n)
    if prior < 0 or not math.isfinite(prior):
        raise ValueError(f"prior must be a finite number >= 0, got {prior}")
    if n_bootstrap < 0 or not 0.0 < confidence < 1.0:
        raise ValueError(f"need n_bootstrap >= 0 and 0 < confidence < 1, got {n_bootstrap}")
    if a_points is None:
        soft = np.array(
            [1.0 if o is Outcome.A_WINS else 0.5 if o is Outcome.TIE else 0.0 for o in results]
        )
    else:
        soft = np.asarray(a_points, dtype=float)
        if soft.shape != (len(results),) or not np.all((soft >= 0.0) & (soft <= 1.0)):
            raise ValueError("a_points must hold one value within [0, 1] per match")
    m = len(results)
    fitted, iterations, converged = np.zeros(n), 0, True
    if m:
        points = _points_matrix(n, xs, ys, soft, np.ones(m))
        fitted, iterations, converged = _fit(points, prior, fitted, tolerance, max_iter)
        fitted -= fitted.mean()
    ci_low = ci_high = None
    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        draws = np.zeros((n_bootstrap, n))
        for b in range(n_bootstrap if m else 0):
            counts = np.bincount(rng.integers(0, m, m), minlength=m).astype(float)
            resampled = _points_matrix(n, xs, ys, soft, counts)
            s, _, _ = _fit(resampled, prior, fitted, tolerance, max_iter)
            draws[b] = s - s.mean()
        tail = 50.0 * (1.0 - confidence)
        ci_low = tuple(float(v) for v in np.percentile(draws, tail, axis=0))
        ci_high = tuple(float(v) for v in np.percentile(draws, 100.0 - tail, axis=0))
    scores = tuple(float(v) for v in fitted)
    return BradleyTerryResult(
        n=n,
        scores=scores,
        ranking=ranking_from_scores(scores),
        ci_low=ci_low,
        ci_high=ci_high,
        prior=prior,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
        iterations=iterations,
        converged=converged,
    )
