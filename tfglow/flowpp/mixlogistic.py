"""Mixture of K logistics: log-pdf, log-CDF, log-survival, logit of the CDF and its inverse.

For x [...] and parameters logits, means, logscales [..., K] (Flow++ eq. 18; logistic.py:5-70):

    z_k = (x - mu_k) * exp(-s_k),   w_k = log_softmax(logits)_k
    log F(x)      = logsumexp_k(w_k + log sigmoid(z_k))
    log(1 - F(x)) = logsumexp_k(w_k + log sigmoid(-z_k))
    log f(x)      = logsumexp_k(w_k - s_k + log sigmoid(z_k) + log sigmoid(-z_k))
    logit F(x)    = log F - log(1 - F)

The official code forms exp(log F) and then the logit (flows.py:461-465 with Sigmoid's
inverse), which is inf in float32 once F rounds to 1 (x a few scales right of every mean);
log F - log(1 - F) stays finite and accurate for every finite z. The coupling's log-derivative
log f - log F - log(1 - F) is computed with the large, cancelling terms subtracted inside the
log-sum-exps (`log_dlogit`), so it too stays accurate in both tails.

The inverse of logit F (the coupling's inverse) is found by
  * `invert_bisection`: the official bisection (logistic.py:134-166): x0 = 0, bounds
    min/max_k(mu_k -/+ 200 * sum_j exp(s_j)), halve towards the side of the target, stop when
    the largest step over the WHOLE tensor is <= tol (1e-12) or after 200 iterations. We compare
    logit F(x) with the target logit instead of F(x) with a target F clipped to [0, 1]: the same
    test wherever F is representable, and exact where F rounds to 0 or 1.
  * `invert_chandrupatla`: tfp.math.find_root_chandrupatla on logit F(x) - target in the same
    bracket, each element stopping on its own.
Measured speed and error of both: benchmarks/results/flowpp.json ("inverse" rows).
"""
import tensorflow as tf
import tensorflow_probability as tfp

MIN_LOGSCALE = -7.0


def _terms(x, logits, means, logscales):
    """Per component: (w_k, log sigmoid(z_k), log sigmoid(-z_k)), each [..., K]."""
    z = (x[..., None] - means) * tf.exp(-logscales)
    w = tf.nn.log_softmax(logits, axis=-1)
    return w, -tf.nn.softplus(-z), -tf.nn.softplus(z)


def logcdf(x, logits, means, logscales):
    w, lsig, _ = _terms(x, logits, means, logscales)
    return tf.reduce_logsumexp(w + lsig, axis=-1)


def logsf(x, logits, means, logscales):
    w, _, lsig_neg = _terms(x, logits, means, logscales)
    return tf.reduce_logsumexp(w + lsig_neg, axis=-1)


def logpdf(x, logits, means, logscales):
    w, lsig, lsig_neg = _terms(x, logits, means, logscales)
    return tf.reduce_logsumexp(w - logscales + lsig + lsig_neg, axis=-1)


def logit_cdf(x, logits, means, logscales):
    """logit F(x) = log F - log(1 - F), finite for all finite z."""
    w, lsig, lsig_neg = _terms(x, logits, means, logscales)
    return (tf.reduce_logsumexp(w + lsig, axis=-1)
            - tf.reduce_logsumexp(w + lsig_neg, axis=-1))


def _shifted_lse_difference(tail, extra):
    """logsumexp(tail + extra) - logsumexp(tail), with tail shifted by its max first so that
    the dominant component's (possibly huge) value cancels exactly."""
    tail = tail - tf.stop_gradient(tf.reduce_max(tail, axis=-1, keepdims=True))
    return tf.reduce_logsumexp(tail + extra, axis=-1) - tf.reduce_logsumexp(tail, axis=-1)


def logit_cdf_and_log_dlogit(x, logits, means, logscales):
    """(logit F(x), log d logit F / dx = log f - log F - log(1 - F)), each [...].

    log f - log F is formed as a shifted difference of log-sum-exps over the CDF's terms when
    F < 1/2 (left tail: log F is large and negative) and log f - log(1 - F) over the survival
    terms otherwise, so neither subtracts two large numbers.
    """
    w, lsig, lsig_neg = _terms(x, logits, means, logscales)
    lcdf_terms, lsf_terms = w + lsig, w + lsig_neg
    lcdf = tf.reduce_logsumexp(lcdf_terms, axis=-1)
    lsf = tf.reduce_logsumexp(lsf_terms, axis=-1)
    # f_k / F_k-term: the pdf's term is the CDF's term + (-s_k + log sigmoid(-z_k)).
    left = _shifted_lse_difference(lcdf_terms, lsig_neg - logscales) - lsf
    right = _shifted_lse_difference(lsf_terms, lsig - logscales) - lcdf
    return lcdf - lsf, tf.where(lcdf < lsf, left, right)


def bisection_bounds(means, logscales, scale=200.0):
    """(lb, ub) [...]: min/max_k(mu_k -/+ scale * sum_j exp(s_j)) (logistic.py:153-155)."""
    spread = scale * tf.reduce_sum(tf.exp(logscales), axis=-1, keepdims=True)
    return (tf.reduce_min(means - spread, axis=-1), tf.reduce_max(means + spread, axis=-1))


def invert_bisection(target, logits, means, logscales, tol=1e-12, max_iterations=200,
                     bounds_scale=200.0):
    """x with logit F(x) = target [...] by the official bisection (no gradient)."""
    target, logits, means, logscales = (tf.stop_gradient(t)
                                        for t in (target, logits, means, logscales))
    lb, ub = bisection_bounds(means, logscales, bounds_scale)

    def body(x, lb, ub, _):
        above = logit_cdf(x, logits, means, logscales) > target
        new_x = tf.where(above, (x + lb) / 2.0, (x + ub) / 2.0)
        new_lb = tf.where(above, lb, x)
        new_ub = tf.where(above, x, ub)
        return new_x, new_lb, new_ub, tf.reduce_max(tf.abs(new_x - x))

    x0 = tf.zeros_like(target)
    inf = tf.constant(float("inf"), target.dtype)
    x, _, _, _ = tf.while_loop(lambda x, lb, ub, diff: diff > tol, body, (x0, lb, ub, inf),
                               maximum_iterations=max_iterations)
    return tf.stop_gradient(x)


def invert_chandrupatla(target, logits, means, logscales, position_tolerance=None,
                        max_iterations=200, bounds_scale=200.0):
    """x with logit F(x) = target [...] by Chandrupatla's method, per element (no gradient).

    position_tolerance is absolute (TFP adds a few ulps of |x|); by default 1e-6 in float32
    (its limit for |x| ~ 10) and 1e-12 in float64.
    """
    target, logits, means, logscales = (tf.stop_gradient(t)
                                        for t in (target, logits, means, logscales))
    if position_tolerance is None:
        position_tolerance = 1e-12 if target.dtype == tf.float64 else 1e-6
    lb, ub = bisection_bounds(means, logscales, bounds_scale)
    result = tfp.math.find_root_chandrupatla(
        lambda x: logit_cdf(x, logits, means, logscales) - target, low=lb, high=ub,
        position_tolerance=tf.cast(position_tolerance, target.dtype),
        value_tolerance=tf.cast(0.0, target.dtype), max_iterations=max_iterations)
    return tf.stop_gradient(result.estimated_root)


INVERSES = {"bisection": invert_bisection, "chandrupatla": invert_chandrupatla}
