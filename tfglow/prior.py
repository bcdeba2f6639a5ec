"""The top prior (original `prior`) and the class predictor of `--ycond --weight_y`.

For the top latent z [B, h, w, n] the original builds

    p = zeros [B, h, w, 2n]
    p = Conv2DZeros_3x3(p)                 if learntop (edge padding makes it position-dependent)
    p = p + LinearZeros(one_hot(y))        if ycond   (broadcast over h, w)
    mean = p[..., :n],  logs = p[..., n:]  (halves, NOT interleaved as in the split prior)

and scores z under N(mean, exp(logs)). As in tfglow.split we write it as a bijector:
eps = (z - mean) * exp(-logs), log|det| = -sum(logs). Without learntop and ycond the prior
is N(0, I). The classifier predicts y from the spatial mean of z (not eps):
logits = LinearZeros(mean_{h,w}(z)), bits_y = cross-entropy / ln 2.
"""
import keras
import tensorflow as tf

from tfglow.flow import FlowLayer, sum_except_batch
from tfglow.nn import Conv2DZeros, LinearZeros


class TopPrior(FlowLayer):
    """Standardises the top latent under the learned (and class-conditional) prior."""

    def __init__(self, learntop=False, ycond=False, n_y=1, **kwargs):
        super().__init__(**kwargs)
        self.learntop = bool(learntop)
        self.ycond = bool(ycond)
        self.n_y = int(n_y)

    def build(self, input_shape):
        h, w, n = (int(d) for d in input_shape[1:])
        self._shape = (h, w, n)
        if self.learntop:
            self.conv = Conv2DZeros(2 * n, (3, 3), name="p")
            self.conv.build((1, h, w, 2 * n))
        if self.ycond:
            self.embedding = LinearZeros(2 * n, name="y_emb")
            self.embedding.build((None, self.n_y))

    def mean_and_logs(self, y=None):
        """mean, logs of shape [1 or B, h, w, n]; y int [B] is needed iff ycond."""
        h, w, n = self._shape
        p = tf.zeros([1, h, w, 2 * n])
        if self.learntop:
            # The input is zeros for every example, so one example is enough.
            p = self.conv(p)
        if self.ycond:
            if y is None:
                raise ValueError(f"{self.name}: the model is class-conditional (ycond): pass y")
            one_hot = tf.one_hot(y, self.n_y, dtype=p.dtype)
            p = p + tf.reshape(self.embedding(one_hot), [-1, 1, 1, 2 * n])
        return p[..., :n], p[..., n:]

    def forward(self, z, y=None, **cond):
        mean, logs = self.mean_and_logs(y)
        eps = (z - mean) * tf.exp(-logs)
        return eps, -sum_except_batch(tf.broadcast_to(logs, tf.shape(eps)))

    def inverse(self, eps, y=None, **cond):
        mean, logs = self.mean_and_logs(y)
        z = mean + tf.exp(logs) * eps
        return z, sum_except_batch(tf.broadcast_to(logs, tf.shape(z)))


class Classifier(keras.layers.Layer):
    """y logits from the spatial mean of the top latent: [B, h, w, n] -> [B, n_y]."""

    def __init__(self, n_y, **kwargs):
        super().__init__(**kwargs)
        self.n_y = int(n_y)

    def build(self, input_shape):
        self.linear = LinearZeros(self.n_y, name="classifier")
        self.linear.build((None, int(input_shape[-1])))

    def call(self, z):
        return self.linear(tf.reduce_mean(z, axis=[1, 2]))


def bits_y(logits, y):
    """Softmax cross-entropy in bits, [B]."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits) / tf.math.log(2.0)
