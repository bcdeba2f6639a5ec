"""FlowLayer: a Keras layer that is one invertible map, and FlowBijector: its TFP face.

Every flow in tfglow is a `FlowLayer`. It owns its variables (Keras weights) and implements

    forward(x, **cond) -> (y, fldj)    y = f(x),      fldj = log|det df/dx|,  shape [B]
    inverse(y, **cond) -> (x, ildj)    x = f^-1(y),   ildj = -fldj(x),        shape [B]

in the *encoding* direction (data -> latent), i.e. the "Function" column of Glow Table 1.
`layer.bijector(**cond)` returns a `tfp.bijectors.Bijector` with the same forward, inverse
and log-determinants, so flows compose with TFP (`tfb.Chain`, `tfd.TransformedDistribution`).
The training path calls `forward` directly: one pass gives both y and its log-determinant.
"""
import keras
import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors


class FlowLayer(keras.layers.Layer):
    """Base class of invertible layers. Subclasses implement `forward` and `inverse`.

    `event_ndims` is the rank of one example (3 for images [H, W, C]).
    """

    event_ndims = 3

    def forward(self, x, **cond):
        raise NotImplementedError

    def inverse(self, y, **cond):
        raise NotImplementedError

    def call(self, x, reverse=False, **cond):
        return self.inverse(x, **cond) if reverse else self.forward(x, **cond)

    def forward_event_shape(self, shape):
        """Event shape of y for an x of event shape `shape` (a tuple); same by default."""
        return tuple(shape)

    def inverse_event_shape(self, shape):
        return tuple(shape)

    def bijector(self, **cond):
        """This layer as a TFP bijector (forward = encoding direction), with `cond` bound."""
        return FlowBijector(self, **cond)


class FlowBijector(tfb.Bijector):
    """Adapts a FlowLayer to `tfp.bijectors.Bijector`.

    Conditioning inputs (e.g. labels `y`) can be bound at construction or passed per call as
    bijector kwargs. TFP's own methods take an argument named `y`, so per call the labels are
    passed as `labels`: `dist.log_prob(x, bijector_kwargs={"labels": y})`.
    """

    def __init__(self, layer, validate_args=False, name=None, **cond):
        parameters = dict(locals())
        self._layer = layer
        self._cond = cond
        out_rank = getattr(layer, "inverse_event_ndims", layer.event_ndims)
        super().__init__(
            forward_min_event_ndims=layer.event_ndims,
            inverse_min_event_ndims=out_rank,
            is_constant_jacobian=False,
            validate_args=validate_args,
            parameters=parameters,
            name=name or f"{layer.name}_bijector")

    @property
    def layer(self):
        return self._layer

    def _kw(self, kwargs):
        kwargs = dict(kwargs)
        if "labels" in kwargs:
            kwargs["y"] = kwargs.pop("labels")
        return {**self._cond, **kwargs}

    def _forward(self, x, **kwargs):
        return self._layer.forward(x, **self._kw(kwargs))[0]

    def _inverse(self, y, **kwargs):
        return self._layer.inverse(y, **self._kw(kwargs))[0]

    def _forward_log_det_jacobian(self, x, **kwargs):
        return self._layer.forward(x, **self._kw(kwargs))[1]

    def _inverse_log_det_jacobian(self, y, **kwargs):
        return self._layer.inverse(y, **self._kw(kwargs))[1]

    def _forward_event_shape(self, input_shape):
        return tf.TensorShape(self._layer.forward_event_shape(tuple(input_shape)))

    def _inverse_event_shape(self, output_shape):
        return tf.TensorShape(self._layer.inverse_event_shape(tuple(output_shape)))

    def _forward_event_shape_tensor(self, input_shape):
        return tf.constant(self._layer.forward_event_shape(
            tuple(tf.get_static_value(input_shape))), tf.int32)

    def _inverse_event_shape_tensor(self, output_shape):
        return tf.constant(self._layer.inverse_event_shape(
            tuple(tf.get_static_value(output_shape))), tf.int32)


def per_example(value, x):
    """Broadcasts a scalar log-determinant to shape [B] for a batch x."""
    return tf.fill([tf.shape(x)[0]], tf.cast(value, x.dtype))


def sum_except_batch(t):
    """Sum over all axes but the first: [B, ...] -> [B]."""
    return tf.reduce_sum(tf.reshape(t, [tf.shape(t)[0], -1]), axis=1)


def constant_initializer(array):
    """A Keras initializer returning a fixed NumPy array (used with seeded NumPy draws)."""
    def init(shape, dtype=None):
        if tuple(shape) != tuple(array.shape):
            raise ValueError(f"initializer shape {tuple(shape)} != array shape {array.shape}")
        return tf.constant(array, dtype=dtype)
    return init
