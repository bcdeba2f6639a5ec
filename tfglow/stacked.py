"""Stacked weights: the K same-shaped steps of a level keep each weight in one [K, ...] variable.

A level of a Glow model has K flow steps with identical structure. Their weights live in one
`StackedWeights` layer per level, one variable per weight of a step, stacked on a leading axis:

    store.<path>   [K, *shape]        path: the weight's attribute path in a step,
                                      e.g. coupling_nn_conv1_kernel
    step k's layer attribute  ->  Row(store.<path>, k): reads as store.<path>[k] [*shape],
                                  assigns that row (data-dependent init, set_from_matrix)

Why: the level's loop (tfglow.scan) consumes the weights stacked. Per-step variables had to be
read and stacked (a copy of every weight per step, and its gradient a split into K), and the
optimizer re-stacked the K gradients and weights by shape and wrote them back one by one: a
cifar10 model (1,161 variables) had ~8k of its ~10k train-step graph nodes per variable, and
the copies held ~0.8 GB at width 512. Stacked, the loop reads each weight once, its gradient
is one [K, ...] tensor, and the optimizer updates it in place (benchmarks/startup.py,
benchmarks/memory.py).

The steps keep their layers and per-step API (`step.actnorm.bias`, `step.bijector()`,
`set_from_matrix`): their variable attributes become `Row`s, which convert to tensors and
assign like variables. Inside `whole_stack()`, a Row reads as the whole [K, ...] variable, so
`steps[0].raw_weights()` gives the level's stacked raw weights (tfglow.scan).

Checkpoints written with per-step variables (`<step name>/<attribute path>`) are read into
the rows by `restore_per_step` (tfglow.training.checkpoints).
"""
import contextlib
import threading

import keras
import numpy as np
import tensorflow as tf

from tfglow.flow import constant_initializer

_state = threading.local()


@contextlib.contextmanager
def whole_stack():
    """Within: every Row reads as its whole stacked variable [K, ...] (not its row)."""
    before = getattr(_state, "whole", False)
    _state.whole = True
    try:
        yield
    finally:
        _state.whole = before


class Row:
    """Row `index` of a stacked variable [K, *shape]: a variable-like view of shape `shape`.

    Reads (tf.convert_to_tensor, arithmetic, numpy()) give the row; `assign` writes it.
    """

    def __init__(self, variable, index, name):
        self.variable, self.index, self.name = variable, int(index), name

    @property
    def shape(self):
        return tf.TensorShape(self.variable.shape[1:])

    @property
    def dtype(self):
        return tf.as_dtype(self.variable.dtype)

    @property
    def trainable(self):
        return self.variable.trainable

    def read(self):
        value = self.variable.value
        if getattr(_state, "whole", False):
            return tf.convert_to_tensor(value)
        return tf.gather(value, self.index)

    def assign(self, value):
        value = tf.cast(tf.convert_to_tensor(value), self.dtype)
        self.variable.value.scatter_nd_update([[self.index]], value[None])
        return self

    def numpy(self):
        return self.read().numpy()

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.numpy(), dtype=dtype)

    def __repr__(self):
        return f"<Row {self.index} of {self.variable.path} shape={tuple(self.shape)}>"


def _convert_row(value, dtype=None, name=None, as_ref=False):
    t = value.read()
    return t if dtype is None else tf.cast(t, dtype)


tf.register_tensor_conversion_function(Row, _convert_row)

# Arithmetic on a Row is arithmetic on its value (as on a variable).
for _op in ("add", "sub", "mul", "truediv", "floordiv", "pow", "matmul", "mod"):
    for _name in (f"__{_op}__", f"__r{_op}__"):
        setattr(Row, _name, (lambda n: lambda self, other: getattr(self.read(), n)(other))(_name))
for _name in ("__neg__", "__abs__", "__getitem__"):
    setattr(Row, _name, (lambda n: lambda self, *a: getattr(self.read(), n)(*a))(_name))


def variable_attributes(layer, prefix=""):
    """[(owner layer, attribute name, path)] of every variable reachable from `layer` through
    public attributes, in attribute order; path joins the attribute names with "/" (the key
    of the variable in a tf.train.Checkpoint of `layer`)."""
    found = []
    for attr, value in list(vars(layer).items()):
        if attr.startswith("_"):
            continue
        if isinstance(value, keras.Variable):
            found.append((layer, attr, prefix + attr))
        elif isinstance(value, keras.layers.Layer):
            found.extend(variable_attributes(value, prefix + attr + "/"))
    return found


def _replace(owner, attr, row):
    """owner.attr (a Keras variable) becomes `row`; the variable is untracked and released."""
    owner._untrack_variable(getattr(owner, attr))
    owner._delete_tracking(attr)
    object.__setattr__(owner, attr, row)


class StackedWeights(keras.layers.Layer):
    """One [K, ...] variable per weight of K structurally identical layers (module docstring).

    layers: the K layers (built); their variables become Rows of the new variables.
    Attributes: `members` (the K layers), `paths` (attribute path of each weight in a layer),
    `stacked` (the [K, ...] variable of each path, same order).
    """

    def __init__(self, layers, **kwargs):
        super().__init__(**kwargs)
        layers = tuple(layers)
        per_layer = [variable_attributes(layer) for layer in layers]
        paths = [p for _, _, p in per_layer[0]]
        for layer, found in zip(layers, per_layer):
            if [p for _, _, p in found] != paths:
                raise ValueError(f"{self.name}: {layer.name} does not have the weights of "
                                 f"{layers[0].name}")
        stacked = []
        for j, path in enumerate(paths):
            variables = [getattr(owner, attr) for owner, attr, _ in
                         (found[j] for found in per_layer)]
            value = np.stack([v.numpy() for v in variables])
            var = self.add_weight(shape=value.shape, dtype=variables[0].dtype,
                                  trainable=variables[0].trainable,
                                  initializer=constant_initializer(value),
                                  name=path.replace("/", "_"))
            setattr(self, path.replace("/", "_"), var)
            stacked.append(var)
            for k, found in enumerate(per_layer):
                owner, attr, _ = found[j]
                _replace(owner, attr, Row(var, k, name=f"{layers[k].name}/{path}"))
        for k, layer in enumerate(layers):
            object.__setattr__(layer, "_stacked_in", (self, k))
        # Not tracked again: the layers belong to their model, the variables to this layer.
        object.__setattr__(self, "members", layers)
        object.__setattr__(self, "paths", tuple(paths))
        object.__setattr__(self, "stacked", tuple(stacked))
        self.built = True

    def rows_of(self, layers):
        """True iff `layers` are exactly this store's layers, in order."""
        return (len(layers) == len(self.members)
                and all(a is b for a, b in zip(layers, self.members)))


def store_of(layers):
    """The StackedWeights whose layers are exactly `layers` (in order), else None."""
    if not layers:
        return None
    store = getattr(layers[0], "_stacked_in", (None, 0))[0]
    return store if store is not None and store.rows_of(list(layers)) else None


def per_step_keys(store, prefix="model"):
    """{stacked variable: [checkpoint key of row k, for k in 0..K-1]} in the per-step layout
    (tfglow before stacked weights): <prefix>/<layer name>/<path>/.ATTRIBUTES/VARIABLE_VALUE."""
    return {var: [f"{prefix}/{layer.name}/{path}/.ATTRIBUTES/VARIABLE_VALUE"
                  for layer in store.members]
            for var, path in zip(store.stacked, store.paths)}


def restore_per_step(stores, reader, prefix="model"):
    """Fills the stacked variables of `stores` from a per-step checkpoint (`reader`:
    tf.train.load_checkpoint). Returns False (changing nothing) if the checkpoint is not in
    that layout; raises ValueError naming the first missing or mis-shaped weight."""
    keys = [per_step_keys(s, prefix) for s in stores]
    if not keys or not reader.has_tensor(next(iter(keys[0].values()))[0]):
        return False
    for by_var in keys:
        for var, row_keys in by_var.items():
            rows = []
            for key in row_keys:
                if not reader.has_tensor(key):
                    raise ValueError(f"per-step checkpoint lacks {key}")
                rows.append(reader.get_tensor(key))
            value = np.stack(rows)
            if value.shape != tuple(var.shape):
                raise ValueError(f"{row_keys[0]}: shape {value.shape[1:]} != this model's "
                                 f"{tuple(var.shape[1:])}")
            var.assign(value)
    return True
