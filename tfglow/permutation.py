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

    def raw_weights(self):
        return ()

    def prepare(self, raw, inverse=False):
        return ()

    def forward_with(self, prepared, x):
        return x[..., ::-1], per_example(0.0, x)

    def inverse_with(self, prepared, y):
        return y[..., ::-1], per_example(0.0, y)

    def forward(self, x, **cond):
        return self.forward_with((), x)

    def inverse(self, y, **cond):
        return self.inverse_with((), y)


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

    def raw_weights(self):
        """(indices [C], indices_inverse [C]), int32."""
        return tf.convert_to_tensor(self.indices), tf.convert_to_tensor(self.indices_inverse)

    def prepare(self, raw, inverse=False):
        """(the indices of this direction [..., C],)."""
        return (raw[1] if inverse else raw[0],)

    def forward_with(self, prepared, x):
        return tf.gather(x, prepared[0], axis=-1), per_example(0.0, x)

    inverse_with = forward_with

    def forward(self, x, **cond):
        return self.forward_with(self.prepare(self.raw_weights()), x)

    def inverse(self, y, **cond):
        return self.inverse_with(self.prepare(self.raw_weights(), inverse=True), y)
