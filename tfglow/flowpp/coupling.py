"""Mixture-logistic coupling (Flow++ eq. 17-20; flows.py:443-529) and the affine ablation.

Given the pair (x_1, x_2) [B, H, W, C] each, the conditioner on x_1 (and an optional context)
gives out [B, H, W, C, 2 + 3K]:

    a = tanh(out[..., 0]),  b = out[..., 1],  (pi, mu, s) = split(out[..., 2:], 3),
    s = max(s, -7)
    y_2 = exp(a) * logit(F(x_2; pi, mu, s)) + b                             (eq. 17, 20)
    log|det| = sum(log f - log F - log(1 - F) + a)                          (per example)
    x_2 = F^-1(sigmoid((y_2 - b) * exp(-a)))   by bisection (or Chandrupatla's method)

y_1 = x_1. logit(F) is log F - log(1 - F) (tfglow.flowpp.mixlogistic), not the official
logit(exp(log F)), which overflows in float32. `mixture_dtype="float64"` evaluates the mixture
(forward and inverse) in float64; the network stays float32.
AffineCoupling (abl_nomixlog.py:20-68): out [..., 2], y_2 = x_2 * exp(tanh(out_0)) + out_1.
"""
import tensorflow as tf

from tfglow.flow import sum_except_batch
from tfglow.flowpp import mixlogistic
from tfglow.flowpp.conditioner import Conditioner
from tfglow.flowpp.pair import PairFlowLayer


class MixLogisticCoupling(PairFlowLayer):
    """Transforms the second half of a pair given the first; see the module docstring.

    components: K >= 1; inverse: "bisection" (official) or "chandrupatla" (per element);
    context_channels: channels of the context input (0: none).
    """

    n_params = None  # per element: 2 + 3K (affine: 2)

    def __init__(self, filters=96, blocks=10, components=32, heads=4, dropout=0.0,
                 attention=True, context_channels=0, inverse="bisection",
                 mixture_dtype="float32", rng=None, **kwargs):
        super().__init__(**kwargs)
        self._check_components(components)
        if inverse not in mixlogistic.INVERSES:
            raise ValueError(f"inverse={inverse!r} must be one of {sorted(mixlogistic.INVERSES)}")
        if mixture_dtype not in ("float32", "float64"):
            raise ValueError(f"mixture_dtype={mixture_dtype!r} must be 'float32' or 'float64'")
        self.components = int(components)
        self.context_channels = int(context_channels)
        self.inverse_method = inverse
        self.mixture_dtype = tf.as_dtype(mixture_dtype)
        self.net_kwargs = dict(filters=filters, blocks=blocks, heads=heads, dropout=dropout,
                               attention=attention, context_channels=context_channels, rng=rng)

    @staticmethod
    def _check_components(components):
        if int(components) < 1:
            raise ValueError(f"components (K) = {components} must be >= 1 for the "
                             "mixture-logistic coupling")

    def per_element(self):
        return 2 + 3 * self.components

    def build(self, half_shape):
        shape = tuple(half_shape)
        self.half_shape = tuple(int(s) for s in shape[1:])
        self.net = Conditioner(shape[-1] * self.per_element(), name="net", **self.net_kwargs)
        self.net.build(shape)
        self.built = True

    def _check_context(self, a, context):
        if not self.context_channels:
            if context is not None:
                raise ValueError(f"{self.name}: context given, but this coupling was built "
                                 "without one (context_channels=0)")
            return None
        if context is None:
            raise ValueError(f"{self.name}: context [B, H, W, {self.context_channels}] is "
                             "required (context_channels > 0)")
        context = tf.convert_to_tensor(context)
        want = self.half_shape[:2] + (self.context_channels,)
        if context.shape.rank != 4 or tuple(context.shape[1:]) != want:
            raise ValueError(f"context must have shape [B, {', '.join(map(str, want))}] (the "
                             f"half's H, W and context_channels); got {context.shape}")
        return context

    def transform_params(self, x1, context=None, training=False, seed=None):
        """(a, b, logits, means, logscales): a, b [B, H, W, C]; the rest [B, H, W, C, K]."""
        context = self._check_context(x1, context)
        out = self.net(x1, context=context, training=training, seed=seed)
        h, w, c = self.half_shape
        out = tf.reshape(out, [-1, h, w, c, self.per_element()])
        a, b = tf.tanh(out[..., 0]), out[..., 1]
        logits, means, logscales = tf.split(out[..., 2:], 3, axis=-1)
        return a, b, logits, means, tf.maximum(logscales, mixlogistic.MIN_LOGSCALE)

    def _mix(self, *tensors):
        """The mixture's inputs in float64 if mixture_dtype is float64 (else unchanged)."""
        if self.mixture_dtype == tf.float64:
            return [tf.cast(t, tf.float64) for t in tensors]
        return list(tensors)

    def forward_pair(self, x1, x2, context=None, training=False, seed=None):
        a, b, *mix = self.transform_params(x1, context, training, seed)
        logit_f, log_d = mixlogistic.logit_cdf_and_log_dlogit(*self._mix(x2, *mix))
        logit_f, log_d = tf.cast(logit_f, x2.dtype), tf.cast(log_d, x2.dtype)
        y2 = tf.exp(a) * logit_f + b
        return (x1, y2), sum_except_batch(log_d + a)

    def inverse_pair(self, x1, y2, context=None, training=False, seed=None):
        a, b, *mix = self.transform_params(x1, context, training, seed)
        target = (y2 - b) * tf.exp(-a)
        mix64 = self._mix(target, *mix)
        x2 = mixlogistic.INVERSES[self.inverse_method](*mix64)
        _, log_d = mixlogistic.logit_cdf_and_log_dlogit(x2, *mix64[1:])
        x2, log_d = tf.cast(x2, y2.dtype), tf.cast(log_d, y2.dtype)
        return (x1, x2), -sum_except_batch(log_d + a)


class AffineCoupling(MixLogisticCoupling):
    """The affine-coupling ablation: y_2 = x_2 * exp(tanh(out_0)) + out_1."""

    def __init__(self, filters=96, blocks=10, heads=4, dropout=0.0, attention=True,
                 context_channels=0, rng=None, **kwargs):
        super().__init__(filters=filters, blocks=blocks, components=1, heads=heads,
                         dropout=dropout, attention=attention, context_channels=context_channels,
                         rng=rng, **kwargs)
        self.components = 0

    def per_element(self):
        return 2

    def _affine(self, x1, context, training, seed):
        context = self._check_context(x1, context)
        out = self.net(x1, context=context, training=training, seed=seed)
        h, w, c = self.half_shape
        out = tf.reshape(out, [-1, h, w, c, 2])
        return tf.tanh(out[..., 0]), out[..., 1]

    def forward_pair(self, x1, x2, context=None, training=False, seed=None):
        a, b = self._affine(x1, context, training, seed)
        return (x1, x2 * tf.exp(a) + b), sum_except_batch(a)

    def inverse_pair(self, x1, y2, context=None, training=False, seed=None):
        a, b = self._affine(x1, context, training, seed)
        return (x1, (y2 - b) * tf.exp(-a)), -sum_except_batch(a)
