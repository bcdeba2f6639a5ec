"""Stacked weights: the K same-shaped steps of a level keep each weight in one [K, ...] variable.

A level of a Glow model has K flow steps with identical structure. Their weights live in one
`StackedWeights` layer per level, one variable per weight of a step, stacked on a leading axis:

    store.<path>   [K, *shape]        path: the weight's attribute path in a step,
                                      e.g. coupling_nn_conv1_kernel
    step k's layer attribute  ->  Row(store.<path>, k): reads as store.<path>[k] [*shape],
                                  assigns that row (data-dependent init, set_from_matrix)

Why: the level's loop (tfglow.scan) consumes the weights stacked. Per-step variables had to be
read and stacked every step (a copy of every weight, its gradient a split into K), and the
optimizer re-stacked the K gradients and weights by shape and wrote them back one by one: of
the cifar10 preset's ~9,800 train-step graph nodes, ~8,000 were per variable (1,161 of them).
Stacked, the loop reads each weight once, its gradient is one [K, ...] tensor, and each is its
own optimizer group; the train step has ~3,000 nodes, which shortens tracing and graph
optimisation (benchmarks/startup.py).

The steps keep their layers and per-step API (`step.actnorm.bias`, `step.bijector()`,
`set_from_matrix`): their variable attributes become `Row`s, which convert to tensors and
assign like variables. Inside `whole_stack()`, a Row reads as the whole [K, ...] variable, so
`steps[0].raw_weights()` gives the level's stacked raw weights (tfglow.scan); inside
`row_index(k)`, every Row reads and assigns row k (a tensor), so one traced step serves the
level (the data-dependent init, tfglow.memory.ddi_level). The steps are built inside
`deferred_variables()`, so their own variables are never created: StackedWeights stacks
their initial values.

Checkpoints written with per-step variables (`<step name>/<attribute path>`; every tfglow
before this) are read into the rows by `restore_per_step_model`, and their optimizer slots
by GlowOptimizer.restore_per_step_layout with `per_step_layout` (both called by
tfglow.training.checkpoints.restore_checkpoint).
"""
import contextlib
import threading
import weakref

import keras
from keras.src.backend.common import global_state as keras_global_state
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from tfglow.flow import constant_initializer

_state = threading.local()


@contextlib.contextmanager
def _thread_setting(name, value):
    before = getattr(_state, name, None)
    setattr(_state, name, value)
    try:
        yield
    finally:
        setattr(_state, name, before)


def whole_stack():
    """Context: every Row reads as its whole stacked variable [K, ...] (not its row)."""
    return _thread_setting("whole", True)


def row_index(index):
    """Context: every Row reads and assigns row `index` (an int32 scalar tensor) of its
    variable instead of its own, so one traced step body serves all K steps of a level."""
    return _thread_setting("index", index)


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

    def _row(self):
        index = getattr(_state, "index", None)
        return self.index if index is None else index

    # Dense reads and writes only: one sparse access (a gather from or a scatter into the
    # variable) puts it in TensorFlow's copy-on-read mode for good, after which every read
    # of it, in every train step, copies the whole [K, ...] variable.
    def read(self):
        value = tf.convert_to_tensor(self.variable.value)
        if getattr(_state, "whole", False):
            return value
        return tf.gather(value, self._row())

    def assign(self, value):
        value = tf.cast(tf.convert_to_tensor(value), self.dtype)
        var, index = self.variable.value, tf.reshape(self._row(), [1, 1])
        var.assign(tf.tensor_scatter_nd_update(tf.convert_to_tensor(var), index, value[None]))
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


def variable_attributes(layer, prefix="", seen=None):
    """[(owner layer, attribute name, path)] of every variable reachable from `layer` through
    public attributes, in attribute order; path joins the attribute names with "/" (the
    variable's object path in a tf.train.Checkpoint of `layer`)."""
    seen = set() if seen is None else seen
    seen.add(id(layer))
    found = []
    for attr, value in list(vars(layer).items()):
        if attr.startswith("_"):
            continue
        if isinstance(value, keras.Variable):
            found.append((layer, attr, prefix + attr))
        elif isinstance(value, keras.layers.Layer) and id(value) not in seen:
            found.extend(variable_attributes(value, prefix + attr + "/", seen))
    return found


def weight_variables(layer):
    """The variables holding `layer`'s weights: its own, and the stacked variables its Rows
    are rows of (each once)."""
    found = {}
    for sub in [layer, *layer._flatten_layers()]:
        for value in vars(sub).values():
            var = value.variable if isinstance(value, Row) else value
            if isinstance(var, keras.Variable):
                found.setdefault(id(var), var)
    return list(found.values())


def _initial_value(variable):
    """The value of a Keras variable, or of its initializer if it was created in a
    deferred_variables() scope (never initialised)."""
    initializer = getattr(variable, "_initializer", None)
    if initializer is not None:
        return np.asarray(initializer(tuple(variable.shape), variable.dtype))
    return variable.numpy()


@contextlib.contextmanager
def deferred_variables():
    """Within: layers create Keras variables without TensorFlow variables (Keras' stateless
    scope keeps each one's initializer), for layers whose weights a StackedWeights then takes
    over: creating the per-step variables first took ~2 s of the cifar10 preset's build.
    Yields a list that holds the variables created, on leaving; pass it to
    initialize_untaken once the StackedWeights exist."""
    registry = "uninitialized_variables"
    before = list(keras_global_state.get_global_attribute(registry, []) or [])
    created = []
    with keras.StatelessScope(initialize_variables=False):
        yield created
    known = {id(v) for v in before}
    created.extend(v for v in keras_global_state.get_global_attribute(registry, []) or []
                   if id(v) not in known)
    keras_global_state.set_global_attribute(registry, before)


def initialize_untaken(created):
    """Initialises the variables of a deferred_variables() scope no StackedWeights took."""
    for v in created:
        if not getattr(v, "_taken_over", False):
            v._deferred_initialize()


def _replace(owner, attr, row):
    """owner.attr (a Keras variable) becomes `row`; the variable is untracked and released."""
    variable = getattr(owner, attr)
    owner._untrack_variable(variable)
    owner._delete_tracking(attr)
    object.__setattr__(variable, "_taken_over", True)
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

        def signature(found):
            return [(p, tuple(getattr(o, a).shape), getattr(o, a).dtype) for o, a, p in found]
        for layer, found in zip(layers, per_layer):
            if signature(found) != signature(per_layer[0]):
                raise ValueError(f"{self.name}: {layer.name} does not have the weights of "
                                 f"{layers[0].name}")
        # Where each layer's trainable variables were in the layers' own order (a model's
        # trainable_variables before stacking: the order of older optimizer slots).
        position = {id(getattr(owner, attr)): (j, k) for k, found in enumerate(per_layer)
                    for j, (owner, attr, _) in enumerate(found)}
        legacy = [position[id(v)] for layer in layers for v in layer.trainable_variables]
        stacked = []
        for j, path in enumerate(paths):
            variables = [getattr(owner, attr) for owner, attr, _ in
                         (found[j] for found in per_layer)]
            value = np.stack([_initial_value(v) for v in variables])
            var = self.add_weight(shape=value.shape, dtype=variables[0].dtype,
                                  trainable=variables[0].trainable,
                                  initializer=constant_initializer(value),
                                  name=path.replace("/", "_"))
            setattr(self, path.replace("/", "_"), var)
            stacked.append(var)
            for k, found in enumerate(per_layer):
                owner, attr, _ = found[j]
                _replace(owner, attr, Row(var, k, name=f"{layers[k].name}/{path}"))
        # Weak references both ways: the layers belong to their model, and Keras' weight
        # saving walks every attribute (a cycle store -> step -> store recursed without end).
        for layer in layers:
            object.__setattr__(layer, "_stacked_in", weakref.ref(self))
        object.__setattr__(self, "_members", tuple(weakref.ref(layer) for layer in layers))
        object.__setattr__(self, "paths", tuple(paths))
        object.__setattr__(self, "stacked", tuple(stacked))
        #: [(stacked variable, row)] in the order of the K layers' own trainable variables.
        object.__setattr__(self, "legacy_order", tuple((stacked[j], k) for j, k in legacy))
        self.built = True

    @property
    def members(self):
        """The K layers whose weights this holds, in row order."""
        return tuple(ref() for ref in self._members)

    def rows_of(self, layers):
        """True iff `layers` are exactly this store's layers, in order."""
        return (len(layers) == len(self.members)
                and all(a is b for a, b in zip(layers, self.members)))


def store_of(layers):
    """The StackedWeights whose layers are exactly `layers` (in order), else None."""
    if not layers:
        return None
    ref = getattr(layers[0], "_stacked_in", None)
    store = ref() if ref is not None else None
    return store if store is not None and store.rows_of(list(layers)) else None


def object_graph(reader):
    """The TrackableObjectGraph of a checkpoint (`reader`: tf.train.load_checkpoint)."""
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    return graph


def variable_key(graph, path):
    """The tensor key of the variable at object path `path` (e.g.
    "model/level0_step0/actnorm/bias") in a checkpoint's object graph, or None. (A variable
    reachable by several paths is saved under one key: trainer checkpoints hold the
    trainable ones under optimizer/_trainable_variables/<i>.)"""
    node = 0
    for name in path.split("/"):
        node = next((c.node_id for c in graph.nodes[node].children if c.local_name == name),
                    None)
        if node is None:
            return None
    attributes = graph.nodes[node].attributes
    return attributes[0].checkpoint_key if attributes else None


def restore_per_step_model(model, reader, prefix="model"):
    """Restores every variable of `model` (with `level_weights`, e.g. Glow) from a checkpoint
    of the per-step layout (tfglow before stacked weights: step k's weight at
    <prefix>/<step name>/<path>): the stacked ones row by row, the others by their object
    path. `reader`: tf.train.load_checkpoint. Returns False (changing nothing) if the
    checkpoint is not in that layout; raises ValueError naming the first missing or
    mis-shaped weight."""
    stores = list(getattr(model, "level_weights", ()))
    graph = object_graph(reader)

    def value(path):
        key = variable_key(graph, f"{prefix}/{path}")
        if key is None:
            raise ValueError(f"per-step checkpoint lacks {prefix}/{path}")
        return reader.get_tensor(key)

    if not stores or variable_key(
            graph, f"{prefix}/{stores[0].members[0].name}/{stores[0].paths[0]}") is None:
        return False
    skip = {id(store) for store in stores}
    values = [(getattr(owner, attr), value(path))
              for owner, attr, path in variable_attributes(model) if id(owner) not in skip]
    for store in stores:
        for var, path in zip(store.stacked, store.paths):
            rows = np.stack([value(f"{layer.name}/{path}") for layer in store.members])
            if rows.shape != tuple(var.shape):
                raise ValueError(f"{prefix}/{store.members[0].name}/{path}: shape "
                                 f"{rows.shape[1:]} != this model's {tuple(var.shape[1:])}")
            values.append((var, rows))
    for var, v in values:  # only once everything was found
        var.assign(v)
    return True


def per_step_layout(model):
    """[(variable, row or None)]: `model`'s trainable variables in the order the per-step
    layout had them (Keras' order: the model's own, then each sublayer's in tracking order,
    a level's stacked weights standing where its steps were), as rows of stacked ones."""
    layout = [(v, None) for v in model._trainable_variables]
    for layer in model._flatten_layers(include_self=False, recursive=False):
        if isinstance(layer, StackedWeights):
            layout.extend(layer.legacy_order)
        else:
            layout.extend((v, None) for v in layer.trainable_variables)
    return layout
