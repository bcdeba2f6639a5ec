"""Fixed channel permutations (Glow section 3.3, "Permutation"; flow_permutation 0 and 1).

    reverse (0):  y[..., i] = x[..., C-1-i]           (RealNVP's choice)
    shuffle (1):  y[..., i] = x[..., perm[i]]         (a fixed random permutation)

Both are volume-preserving: log|det| = 0. The shuffle is stored as non-trainable variables
(`indices` and its inverse), so it survives saving and loading the weights.
"""
import numpy as np
import tensorflow as tf

from tfglow.flow import FlowLayer, constant_initializer, per_example


class Reverse(FlowLayer):
    """Reverses the channel order of [B, H, W, C]."""

    def forward(self, x, **cond):
        return x[..., ::-1], per_example(0.0, x)

    def inverse(self, y, **cond):
        return y[..., ::-1], per_example(0.0, y)


class Shuffle(FlowLayer):
    """A fixed random channel permutation of [B, H, W, C], drawn from `rng` at build."""

    def __init__(self, rng=None, **kwargs):
        super().__init__(**kwargs)
        self._rng = rng if rng is not None else np.random.default_rng()

    def build(self, input_shape):
        channels = int(input_shape[-1])
        perm = self._rng.permutation(channels).astype(np.int32)
        self.indices = self.add_weight(shape=(channels,), dtype="int32", trainable=False,
                                       initializer=constant_initializer(perm), name="indices")
        self.indices_inverse = self.add_weight(
            shape=(channels,), dtype="int32", trainable=False,
            initializer=constant_initializer(np.argsort(perm).astype(np.int32)),
            name="indices_inverse")

    def forward(self, x, **cond):
        return tf.gather(x, self.indices, axis=-1), per_example(0.0, x)

    def inverse(self, y, **cond):
        return tf.gather(y, self.indices_inverse, axis=-1), per_example(0.0, y)
