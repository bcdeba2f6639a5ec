"""Optimizers of the original Glow release (``openai/glow`` ``optim.py``) for TF2 / Keras 3.

What the original does, and what is reproduced here:

* ``adamax`` (the default) and ``adam``, with ``beta2 = 1 - 1 / (train_its * polyak_epochs)``
  (:func:`polyak_beta2`), gradients averaged over workers, and, per step ``t = 1, 2, ...``::

      lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)
      m1   = beta1 * m1 + (1 - beta1) * g           (m1 = g, no slot, when beta1 == 0)
      m2   = max(beta2 * m2, |g|)                    Adamax
      m2   = beta2 * m2 + (1 - beta2) * g**2         Adam
      w    = weight_decay * w - lr_t * m1 / (m2 + eps)            Adamax
      w    = weight_decay * w - lr_t * m1 / (sqrt(m2) + eps)      Adam

  ``weight_decay`` is the original's *multiplicative* decay (1.0 = off), not Keras' decoupled
  weight decay. The bias-correction factor is computed in float32 like the original.
* Polyak averaging: ``tf.train.ExponentialMovingAverage(decay=beta2, zero_debias=True)`` applied
  to the trainable variables. In TF1, ``zero_debias`` only affects averages of *tensors*: the
  average of a ``tf.Variable`` starts at the variable's value and is updated as
  ``avg -= (avg - w) * (1 - decay)`` with no debiasing, using the weights after each update.
  Where the original's average *started*: its shadow variables were initialised by
  ``global_variables_initializer`` from each variable's initializer value, before the
  data-dependent init assigned the actnorm parameters (which ``get_variable_ddi`` creates with
  TF1's default glorot-uniform initializer), so its actnorm averages started from random values
  and decayed towards the trained ones. Here (``polyak_zero_debias=False``, the default) the
  average starts from the weights just before the first step, i.e. after data-dependent init
  and broadcast: the same update rule without the meaningless start. ``polyak_zero_debias=True``
  gives TF1's tensor semantics instead (zero start, divided by ``1 - decay**t``).
  The original never evaluated with the averages (its ``polyak_swap`` calls are commented
  out); :class:`Polyak` adds the means to do so, and train.py validates with them.
* Parameter groups (hflow, tfglow.hierarchical.schedule): :meth:`GlowOptimizer.set_variable_groups`
  gives each variable a group; its learning rate is then ``lr * group_scales[group]`` (the scales
  set every step with :meth:`GlowOptimizer.set_group_scales`). A scale of 0 leaves a variable
  exactly unchanged. Without groups nothing of the above changes.
* Polyak copy phase (hflow's EMA): with ``polyak_copy_steps = N`` the average is a copy of the
  weights during the first N steps, then the usual update.
* Warmup: ``lr * min(1, n_processed / (n_train * epochs_warmup))`` (:func:`warmup_lr`), where
  the original's ``n_processed`` is the number of images processed *before* the step
  (``world_size * n_batch_train`` per step), so the very first step has learning rate 0.

Layout (why this is not one Keras update per variable): the moments and averages of all
variables of one shape are stacked into one slot variable per shape ([n, *shape]; a Glow level's
32 steps share their shapes), and each shape group is updated by one set of ops on the stacked
tensors. With per-step variables the cifar10 preset had 1,161 variables in 18 shapes, so its
compiled train step held 18 updates instead of 1,161, and 9.7k graph nodes instead of 20.8k.
(A Glow level's weights are now stacked variables themselves, tfglow.stacked: each is a group
of one, updated without stacking copies.)
Checkpoints written with one slot per variable (before this layout) are converted on restore
(:meth:`GlowOptimizer.restore_slots_from`).

Distribution: the optimizers are ``keras.optimizers.Optimizer`` subclasses, so
``apply_gradients`` works inside ``tf.function`` and under ``tf.distribute`` strategies. Like the
original's ``allreduce_mean``, gradients given in a replica context are AVERAGED over replicas
(``average_across_replicas=True``; Keras itself would sum them): compute per-replica gradients of
the per-replica mean loss. With Horovod, use ``hvd.DistributedGradientTape`` (which averages) and
no strategy.

This module only depends on TensorFlow and Keras (no other ``tfglow`` modules).
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras.src.utils import tracking as keras_tracking

__all__ = [
    "polyak_beta2",
    "num_train_its",
    "warmup_lr",
    "GlowOptimizer",
    "Adamax",
    "Adam",
    "Polyak",
    "make_optimizer",
]


# --------------------------------------------------------------------------- schedule helpers

def num_train_its(n_train: int, n_batch_train: int, world_size: int = 1) -> int:
    """Optimizer steps per epoch, as the original: ``ceil(n_train / (n_batch_train * world))``.

    (The original uses ``n_batch_train`` here, not the anchor-scaled local batch.)
    """
    if n_train <= 0 or n_batch_train <= 0 or world_size <= 0:
        raise ValueError(f"need positive sizes, got {n_train=}, {n_batch_train=}, {world_size=}")
    return int(math.ceil(n_train / (n_batch_train * world_size)))


def polyak_beta2(train_its: int, polyak_epochs: float = 1.0) -> float:
    """``beta2 = 1 - 1 / (train_its * polyak_epochs)``: the optimizer's beta2 and Polyak decay."""
    horizon = float(train_its) * float(polyak_epochs)
    if horizon <= 1.0:
        raise ValueError(
            f"train_its * polyak_epochs must be > 1 (got {train_its} * {polyak_epochs}); "
            "beta2 would be <= 0")
    return 1.0 - 1.0 / horizon


def warmup_lr(lr, n_processed, n_train, epochs_warmup):
    """Linear warmup of the original train.py: ``lr * min(1, n_processed / (n_train * epochs_warmup))``.

    ``n_processed`` counts images processed before this step over all workers (the original adds
    ``world_size * n_batch_train`` after each step). ``epochs_warmup <= 0`` means no warmup (the
    original would divide by zero). Works on Python numbers and on tensors (inside tf.function).
    """
    if not tf.is_tensor(epochs_warmup) and epochs_warmup <= 0:
        return lr
    if any(tf.is_tensor(a) or isinstance(a, tf.Variable)
           for a in (lr, n_processed, n_train, epochs_warmup)):
        frac = (tf.cast(n_processed, tf.float32)
                / (tf.cast(n_train, tf.float32) * tf.cast(epochs_warmup, tf.float32)))
        return tf.cast(lr, tf.float32) * tf.minimum(1.0, frac)
    return lr * min(1.0, n_processed / (n_train * epochs_warmup))


def _stack(tensors):
    """tf.stack; of one tensor, a reshape (no copy: a stacked [K, ...] weight is its own
    group, tfglow.stacked)."""
    return tf.expand_dims(tensors[0], 0) if len(tensors) == 1 else tf.stack(tensors)


def _unstack(t):
    """tf.unstack along axis 0; of one row, a reshape (no copy)."""
    return [tf.reshape(t, t.shape[1:])] if t.shape[0] == 1 else tf.unstack(t)


# --------------------------------------------------------------------------- optimizers

class GlowOptimizer(keras.optimizers.Optimizer):
    """Shared machinery of :class:`Adamax` and :class:`Adam` (see the module docstring).

    Args:
        learning_rate: float (stored in a variable; set it every step with
            :meth:`set_learning_rate`, also inside a compiled step, without retracing) or a
            Keras schedule / callable of the iteration count.
        beta1: first-moment decay; 0 disables the first moment (as the original).
        beta2: second-moment decay; the original uses :func:`polyak_beta2`.
        epsilon: 1e-8 as the original.
        weight_decay: multiplicative decay ``w <- weight_decay * w - step`` (1.0 = off).
        polyak: keep Polyak averages (slot variables, checkpointed with the optimizer).
        polyak_decay: decay of the averages; ``None`` = ``beta2`` (the original).
        polyak_zero_debias: see the module docstring (default False = the original's numbers).
        polyak_copy_steps: the average copies the weights during the first N steps (hflow: the
            first epoch), then decays as usual; 0 = off.
        average_across_replicas: divide replica-context gradients by the number of replicas
            before Keras sums them, i.e. average them like the original's ``allreduce_mean``.
        **kwargs: other ``keras.optimizers.Optimizer`` arguments (``name``, ``clipnorm``...).
            Keras' own (decoupled) ``weight_decay`` and ``use_ema`` are not used.
    """

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8,
                 weight_decay=1.0, polyak=True, polyak_decay=None, polyak_zero_debias=False,
                 average_across_replicas=True, polyak_copy_steps=0, name=None, **kwargs):
        if kwargs.get("use_ema"):
            raise ValueError("use_ema is not supported; the Polyak average (polyak=True) replaces it")
        kwargs.pop("use_ema", None)
        if isinstance(learning_rate, int):
            learning_rate = float(learning_rate)
        super().__init__(learning_rate=learning_rate, weight_decay=None, name=name, **kwargs)
        if not 0.0 <= beta1 < 1.0:
            raise ValueError(f"beta1 must be in [0, 1), got {beta1}")
        if not 0.0 < beta2 < 1.0:
            raise ValueError(f"beta2 must be in (0, 1), got {beta2}")
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self.epsilon = float(epsilon)
        self.decay_factor = float(weight_decay)
        self.polyak_enabled = bool(polyak)
        self.polyak_decay = float(beta2 if polyak_decay is None else polyak_decay)
        if self.polyak_enabled and not 0.0 < self.polyak_decay < 1.0:
            raise ValueError(f"polyak_decay must be in (0, 1), got {self.polyak_decay}")
        self.polyak_zero_debias = bool(polyak_zero_debias)
        self.average_across_replicas = bool(average_across_replicas)
        self.polyak_copy_steps = int(polyak_copy_steps)
        self._polyak_view = Polyak(self)
        self._variable_groups = None

    # ----------------------------------------------------------------- state
    #: slot names in the order of the per-variable layout that preceded the stacked one
    SLOT_NAMES = ("m1", "m2", "polyak", "polyak_biased")

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        names = [n for n, on in zip(self.SLOT_NAMES, (
            self.beta1 > 0, True, self.polyak_enabled,
            self.polyak_enabled and self.polyak_zero_debias)) if on]
        # One group per (shape, dtype), in order of first appearance; rows in variable order.
        keys, self._groups, self._slot_row = {}, [], []
        for i, var in enumerate(var_list):
            key = (tuple(var.shape), var.dtype)
            if key not in keys:
                keys[key] = len(self._groups)
                self._groups.append([])
            self._slot_row.append((keys[key], len(self._groups[keys[key]])))
            self._groups[keys[key]].append(i)
        self._slot_names = tuple(names)
        # Outside Keras' variable tracking (old checkpoints hold per-variable slots under the
        # optimizer's _variables) and checkpointed by name: stacked_slot_<k>.
        with keras_tracking.DotNotTrackScope():
            self._stacked_slots = []
            for g, rows in enumerate(self._groups):
                ref = var_list[rows[0]]
                colocate = ref.value if isinstance(ref, keras.Variable) else ref
                for name in names:
                    with self._distribution_strategy.extended.colocate_vars_with(colocate):
                        slot = keras.Variable(tf.zeros((len(rows),) + tuple(ref.shape), ref.dtype),
                                              trainable=False, name=f"{name}_{g}")
                    self._track_trackable(slot, name=f"stacked_slot_{len(self._stacked_slots)}")
                    self._stacked_slots.append(slot)

    @property
    def variables(self):
        return list(self._variables) + list(getattr(self, "_stacked_slots", []))

    def _stack(self, group, name):
        """The slot variable [n, *shape] of `name` for shape group `group` (None if absent)."""
        if name not in self._slot_names:
            return None
        return self._stacked_slots[group * len(self._slot_names) + self._slot_names.index(name)]

    def slot(self, name, variable):
        """Current value of `variable`'s slot `name` ("m1", "m2", "polyak", "polyak_biased")
        as a tensor; None if the optimizer keeps no such slot (m1 with beta1 = 0)."""
        return self.slots(name, [variable])[0]

    def slots(self, name, variables):
        """slot(name, v) for each of `variables`, reading each stacked slot once."""
        rows = [self._slot_row[self._get_variable_index(v)] for v in variables]
        if name not in self._slot_names:
            return [None] * len(rows)
        unstacked = {g: tf.unstack(tf.convert_to_tensor(self._stack(g, name)))
                     for g in {g for g, _ in rows}}
        return [unstacked[g][r] for g, r in rows]

    def set_learning_rate(self, lr):
        """Assign the learning rate (Python number or tensor; fine inside a compiled step)."""
        if not isinstance(self._learning_rate, keras.Variable):
            raise TypeError("learning rate is a schedule/callable; it cannot be assigned")
        self._learning_rate.assign(tf.cast(lr, self._learning_rate.dtype))

    def set_variable_groups(self, groups, n_groups):
        """groups: one int in [0, n_groups) per variable of build's var_list (in its order);
        every group's learning rate is then lr * group_scales[group] (scales start at 1)."""
        if not self.built or len(groups) != len(self._trainable_variables):
            raise ValueError("set_variable_groups: build the optimizer first and give one "
                             "group per variable")
        self._variable_groups = [int(g) for g in groups]
        # Not a slot: set every step from the epoch (not saved, so a resume recomputes it).
        self._group_scales = tf.Variable(tf.ones([n_groups]), trainable=False,
                                         name="group_scales")

    def set_group_scales(self, scales):
        self._group_scales.assign(tf.cast(scales, tf.float32))

    @property
    def polyak(self) -> "Polyak":
        """The Polyak-average view: ``swapped(vars)``, ``assign_average_to(vars)``, ..."""
        return self._polyak_view

    # ----------------------------------------------------------------- update
    def apply(self, grads, trainable_variables=None):
        # _step_scalars is per apply: eagerly the learning rate is the same variable at every
        # step, so a cache keyed by it alone kept the first step's t (bias correction) forever.
        self._scalars = None
        grads = list(grads)
        ctx = tf.distribute.get_replica_context()
        if self.average_across_replicas and ctx is not None and ctx.num_replicas_in_sync > 1:
            scale = 1.0 / ctx.num_replicas_in_sync
            grads = [None if g is None else g * tf.cast(scale, g.dtype) for g in grads]
        return super().apply(grads, trainable_variables)

    def _second_moment(self, m2, g, beta2):
        raise NotImplementedError

    def _denominator(self, m2_new, eps):
        raise NotImplementedError

    def _step_scalars(self, learning_rate):
        """Scalars shared by every group's update in one apply: computed once per apply
        (keyed by its learning-rate tensor), not once per group."""
        cached = getattr(self, "_scalars", None)
        if cached is not None and cached[0] is learning_rate:
            return cached[1]
        step = tf.cast(self.iterations + 1, tf.float32)  # t = 1 on the first step
        # Bias correction in float32, as the original (python floats -> float32 tensors).
        b1 = tf.constant(self.beta1, tf.float32)
        b2 = tf.constant(self.beta2, tf.float32)
        lr = tf.cast(learning_rate, tf.float32)
        lr_sqrt = lr * tf.sqrt(1.0 - tf.pow(b2, step))
        scalars = {
            "step": step,
            "lr_t": lr_sqrt / (1.0 - tf.pow(b1, step)),  # the original's (lr * sqrt(..)) / (..)
            "first": tf.equal(self.iterations, 0),
            # TF1: decay -> float32 tensor, then ``1.0 - decay`` in float32.
            "polyak_one_minus": 1.0 - tf.constant(self.polyak_decay, tf.float32),
        }
        self._scalars = (learning_rate, scalars)
        return scalars

    def update_step(self, gradient, variable, learning_rate):
        raise NotImplementedError("GlowOptimizer updates shape groups (_group_update)")

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        """Keras' per-variable loop replaced by one update per shape group (see the module
        docstring); runs once per device under tf.distribute like Keras' own."""
        present = {}
        for grad, var in grads_and_vars:
            if grad is not None:
                present[self._get_variable_index(var)] = (grad, var)
        for g, rows in enumerate(self._groups):
            items = [present.get(i) for i in rows]
            if any(it is not None for it in items):
                anchor = self._stack(g, "m2").value
                distribution.extended.update(
                    anchor, lambda _, *grads, g=g, items=items: self._group_update(
                        g, items, grads, learning_rate),
                    args=tuple(it[0] for it in items if it is not None), group=False)

    def _row_scale(self, group):
        """Learning-rate scale per row [n] of a group (None without variable groups)."""
        if self._variable_groups is None:
            return None
        ids = [self._variable_groups[i] for i in self._groups[group]]
        return tf.gather(tf.convert_to_tensor(self._group_scales), ids)  # dense read (stacked.Row)

    def _group_update(self, group, items, grads, learning_rate):
        """The module docstring's update on the stacked [n, *shape] tensors of one group.
        items[r] = (grad, var) or None for a variable without gradient (left unchanged)."""
        var0 = next(it[1] for it in items if it is not None)
        dtype = var0.dtype
        grads = iter(grads)
        g = _stack([tf.cast(tf.convert_to_tensor(next(grads)), dtype) if it is not None else
                    tf.zeros(var0.shape, dtype) for it in items])
        # Everything below waits for the gradients: else the executor may read and stack the
        # weights and slots (and compute what depends on them alone) at the start of the
        # step and hold those copies through the whole backward pass.
        scalars = self._step_scalars(learning_rate)
        with tf.control_dependencies([g]):
            self._group_update_from(group, items, g, var0, scalars)

    def _group_update_from(self, group, items, g, var0, scalars):
        """_group_update once the group's gradients g [n, *shape] are stacked."""
        dtype = var0.dtype
        w = _stack([tf.convert_to_tensor(self._trainable_variables[i])
                    for i in self._groups[group]])
        keep = (None if all(it is not None for it in items) else
                tf.reshape(tf.constant([it is not None for it in items]),
                           [-1] + [1] * len(var0.shape)))
        select = (lambda new, old: new) if keep is None else (
            lambda new, old: tf.where(keep, new, old))
        lr_t = tf.cast(scalars["lr_t"], dtype)
        scale = self._row_scale(group)
        if scale is not None:
            lr_t = lr_t * tf.reshape(tf.cast(scale, dtype), [-1] + [1] * len(var0.shape))
        if self.beta1 > 0:
            m1 = self._stack(group, "m1")
            m1_new = select(self.beta1 * m1 + (1.0 - self.beta1) * g, m1)
            self.assign(m1, m1_new)
        else:
            m1_new = g
        m2 = self._stack(group, "m2")
        m2_new = select(self._second_moment(m2, g, tf.cast(self.beta2, dtype)), m2)
        self.assign(m2, m2_new)
        delta = m1_new / self._denominator(m2_new, tf.cast(self.epsilon, dtype))
        decayed = w if self.decay_factor == 1.0 else tf.cast(self.decay_factor, dtype) * w
        w_new = select(decayed - lr_t * delta, w)
        for it, value in zip(items, _unstack(w_new)):
            if it is not None:
                self.assign(it[1], value)
        if self.polyak_enabled:
            self._update_polyak(group, w, w_new, scalars, select)

    def _update_polyak(self, group, w_old, w_new, scalars, select):
        """TF1 ``assign_moving_average`` arithmetic: ``avg -= (avg - w) * (1 - decay)``."""
        dtype = w_new.dtype
        one_minus = tf.cast(scalars["polyak_one_minus"], dtype)
        avg = self._stack(group, "polyak")
        if not self.polyak_zero_debias:
            # The average of a variable starts at its value: here the weights right before the
            # first update (so data-dependent init / broadcast done before step 1 are included).
            # A cond on the scalar, not a select over the whole group.
            prev = tf.cond(scalars["first"], lambda: tf.identity(w_old),
                           lambda: tf.convert_to_tensor(avg))
            new = prev - (prev - w_new) * one_minus
            if self.polyak_copy_steps > 0:  # an exact copy (not prev - (prev - w))
                new = tf.where(self.iterations < self.polyak_copy_steps, w_new, new)
            self.assign(avg, select(new, avg))
        else:
            biased = self._stack(group, "polyak_biased")
            biased_new = select(biased - (biased - w_new) * one_minus, biased)
            self.assign(biased, biased_new)
            bias_factor = 1.0 - tf.pow(1.0 - one_minus, tf.cast(scalars["step"], dtype))
            self.assign(avg, select(biased_new / bias_factor, avg))

    # ----------------------------------------------------------------- old checkpoints
    def restore_slots_from(self, checkpoint, prefix="optimizer"):
        """Fill the stacked slots from a checkpoint written with one slot variable per
        variable (tfglow before the stacked layout: ``<prefix>/_variables/<k>``, k counting
        from the optimizer's own variables, each variable's slots in SLOT_NAMES order).

        Returns False (and changes nothing) if the checkpoint already has the stacked layout
        or holds no optimizer. Build the optimizer first."""
        reader = tf.train.load_checkpoint(checkpoint)
        key = f"{prefix}/_variables/{{}}/.ATTRIBUTES/VARIABLE_VALUE".format
        offset = len(self._variables)
        if reader.has_tensor(f"{prefix}/stacked_slot_0/.ATTRIBUTES/VARIABLE_VALUE") \
                or not reader.has_tensor(key(offset)):
            return False
        per_var = len(self._slot_names)
        n = len(self._trainable_variables)
        if reader.has_tensor(key(offset + n * per_var)) or not reader.has_tensor(
                key(offset + n * per_var - 1)):
            raise ValueError(f"{checkpoint}: its optimizer slots do not match this model "
                             f"({n} variables x {per_var} slots expected)")
        self.restore_per_step_layout(checkpoint, [(v, None) for v in self._trainable_variables],
                                     prefix)
        return True

    def restore_per_step_layout(self, checkpoint, layout, prefix="optimizer"):
        """Fill iterations, learning rate and the slots from a checkpoint of a model whose
        weights were one variable per flow step (tfglow.stacked; checkpoints before stacked
        weights). layout: [(variable of this optimizer, row or None)], that model's trainable
        variables in its order, each as a row of a stacked variable (or a whole variable). Its
        slots were stacked by shape over that order, or (older) one slot variable per variable.
        Raises ValueError naming the first missing or mis-shaped slot."""
        reader = tf.train.load_checkpoint(checkpoint)
        names, per = self._slot_names, len(self._slot_names)
        shapes = [(tuple(v.shape[1:]) if r is not None else tuple(v.shape), v.dtype)
                  for v, r in layout]
        groups = {}
        for i, key in enumerate(shapes):
            groups.setdefault(key, []).append(i)
        old = {name: [None] * len(layout) for name in names}
        stacked_key = f"{prefix}/stacked_slot_{{}}/.ATTRIBUTES/VARIABLE_VALUE".format
        per_var_key = f"{prefix}/_variables/{{}}/.ATTRIBUTES/VARIABLE_VALUE".format
        grouped = reader.has_tensor(stacked_key(0))
        for g, rows in enumerate(groups.values()):
            for s, name in enumerate(names):
                if grouped:
                    keys = [stacked_key(g * per + s)]
                else:  # one slot variable per variable, after the optimizer's own two
                    keys = [per_var_key(len(self._variables) + i * per + s) for i in rows]
                missing = [k for k in keys if not reader.has_tensor(k)]
                if missing:
                    raise ValueError(f"{checkpoint}: no {missing[0]} (slot {name!r}); its "
                                     "optimizer does not match this model")
                values = (reader.get_tensor(keys[0]) if grouped else
                          np.stack([reader.get_tensor(k) for k in keys]))
                want = (len(rows),) + shapes[rows[0]][0]
                if values.shape != want:
                    raise ValueError(f"{checkpoint}: {keys[0]} has shape {values.shape}, this "
                                     f"model's slots need {want}")
                for r, i in enumerate(rows):
                    old[name][i] = values[r]
        index = {(id(v), r): i for i, (v, r) in enumerate(layout)}
        for g, rows in enumerate(self._groups):
            for name in names:
                values = []
                for i in rows:
                    var = self._trainable_variables[i]
                    if (id(var), None) in index:
                        values.append(old[name][index[(id(var), None)]])
                    else:
                        values.append(np.stack([old[name][index[(id(var), k)]]
                                                for k in range(var.shape[0])]))
                self._stack(g, name).assign(np.stack(values))
        for var, attr in ((self._iterations, "_iterations"),
                          (self._learning_rate, "_learning_rate")):
            key = f"{prefix}/{attr}/.ATTRIBUTES/VARIABLE_VALUE"
            if isinstance(var, keras.Variable) and reader.has_tensor(key):
                var.assign(reader.get_tensor(key))

    # ----------------------------------------------------------------- config
    def get_config(self):
        config = super().get_config()
        config.update({
            "beta1": self.beta1,
            "beta2": self.beta2,
            "epsilon": self.epsilon,
            "weight_decay": self.decay_factor,
            "polyak": self.polyak_enabled,
            "polyak_decay": self.polyak_decay,
            "polyak_zero_debias": self.polyak_zero_debias,
            "average_across_replicas": self.average_across_replicas,
            "polyak_copy_steps": self.polyak_copy_steps,
        })
        config.pop("use_ema", None)
        for k in ("ema_momentum", "ema_overwrite_frequency"):
            config.pop(k, None)
        return config


@keras.saving.register_keras_serializable(package="tfglow")
class Adamax(GlowOptimizer):
    """The original's default optimizer: ``m2 = max(beta2 * m2, |g|)``, ``delta = m1 / (m2 + eps)``."""

    def _second_moment(self, m2, g, beta2):
        return tf.maximum(beta2 * m2, tf.abs(g))

    def _denominator(self, m2_new, eps):
        return m2_new + eps


@keras.saving.register_keras_serializable(package="tfglow")
class Adam(GlowOptimizer):
    """The original's ``adam``: ``m2 = beta2 * m2 + (1 - beta2) g^2``, ``delta = m1 / (sqrt(m2) + eps)``."""

    def _second_moment(self, m2, g, beta2):
        return beta2 * m2 + (1.0 - beta2) * tf.square(g)

    def _denominator(self, m2_new, eps):
        return tf.sqrt(m2_new) + eps


def make_optimizer(name: str = "adamax", *, lr: float = 0.001, beta1: float = 0.9,
                   train_its: int, polyak_epochs: float = 1.0, weight_decay: float = 1.0,
                   beta2: float | None = None, **kwargs) -> GlowOptimizer:
    """Build the optimizer the original's ``--optimizer`` flag names (``adamax`` or ``adam``).

    ``beta2`` defaults to the original's :func:`polyak_beta2`; a fixed value (Flow++: 0.999)
    replaces it, and ``polyak_decay=`` sets the average's decay apart from it.
    """
    classes = {"adamax": Adamax, "adam": Adam}
    if name not in classes:
        raise ValueError(
            f"unknown optimizer {name!r}; choose from {sorted(classes)} "
            "(the original's experimental 'adam2' is not provided)")
    return classes[name](learning_rate=float(lr), beta1=beta1,
                         beta2=polyak_beta2(train_its, polyak_epochs) if beta2 is None else beta2,
                         weight_decay=weight_decay, **kwargs)


# --------------------------------------------------------------------------- Polyak averages

class Polyak:
    """Access to an optimizer's Polyak averages (``optimizer.polyak``).

    Use eagerly / in cross-replica context (not inside ``strategy.run``). With averaging off
    (``polyak=False``) or before the first step, the averages are the raw weights, so
    :meth:`swapped` and :meth:`assign_average_to` are no-ops.
    """

    def __init__(self, optimizer: GlowOptimizer):
        self._opt = optimizer

    @property
    def enabled(self) -> bool:
        return self._opt.polyak_enabled

    @property
    def averages(self) -> list:
        """The averages as tensors, in the optimizer's variable order (the average slots'
        raw values; see :meth:`values`); [] if averaging is off or the optimizer unbuilt."""
        opt = self._opt
        if not (self.enabled and opt.built):
            return []
        return opt.slots("polyak", opt._trainable_variables)

    def _resolve(self, variables):
        """[(variable, its average tensor)]; [] if averaging is off or unbuilt."""
        opt = self._opt
        if variables is None:
            if not opt.built:
                return []
            variables = opt._trainable_variables
        variables = list(variables)
        if not (self.enabled and opt.built):
            return []
        for v in variables:
            try:
                opt._get_variable_index(v)
            except KeyError:
                raise KeyError(
                    f"variable {getattr(v, 'path', getattr(v, 'name', v))!r} is not one the "
                    "optimizer was built with (only trainable variables have Polyak averages)"
                ) from None
        return list(zip(variables, opt.slots("polyak", variables)))

    def average_of(self, variable):
        """The raw value of ``variable``'s average slot (``None`` if averaging is off)."""
        pairs = self._resolve([variable])
        return pairs[0][1] if pairs else None

    def values(self, variables: Sequence | None = None) -> list:
        """Averaged values of ``variables`` (default: all trainable ones) as tensors."""
        if variables is None:
            variables = list(self._opt._trainable_variables) if self._opt.built else []
        variables = list(variables)
        pairs = self._resolve(variables)
        if not pairs:
            return [tf.convert_to_tensor(v) for v in variables]
        started = tf.greater(self._opt.iterations, 0)
        return [tf.where(started, a, tf.convert_to_tensor(v)) for v, a in pairs]

    def assign_average_to(self, variables: Iterable | None = None) -> None:
        """Overwrite ``variables`` with their averages (e.g. before exporting a model)."""
        variables = None if variables is None else list(variables)
        pairs = self._resolve(variables)
        if not pairs:
            return
        new_values = self.values([v for v, _ in pairs])
        for (v, _), value in zip(pairs, new_values):
            v.assign(value)

    @contextlib.contextmanager
    def swapped(self, variables: Iterable | None = None):
        """Evaluate with averaged weights: inside the block ``variables`` (default: all the
        optimizer's variables) hold their averages; the raw values are restored on exit, also
        when the block raises. The averages themselves are not modified. Do not write training
        checkpoints inside the block (the model variables hold the averages there)."""
        variables = None if variables is None else list(variables)
        pairs = self._resolve(variables)
        if not pairs:
            yield
            return
        raw = [tf.identity(tf.convert_to_tensor(v)) for v, _ in pairs]
        averaged = self.values([v for v, _ in pairs])
        try:
            for (v, _), value in zip(pairs, averaged):
                v.assign(value)
            yield
        finally:
            for (v, _), value in zip(pairs, raw):
                v.assign(value)
