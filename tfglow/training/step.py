"""The compiled train step, shared by the trainer and benchmarks/train_step.py.

    step(batch=(x uint8 [B, H, W, C], y int [B]), step int64) -> mean stats over replicas
        the model's loss_terms (Glow: loss, bits_x, bits_y, pred_error) and grad_norm (of this
        replica's averaged-loss gradients; with clipping, of the replica-averaged ones)

One tf.function: dequantisation noise, forward, backward, gradient averaging over replicas
(by the optimizer, or Horovod's tape), clipping at a global norm if `clip_norm` (Flow++:
the replica-averaged gradients, as the official code), the optimizer update and the Polyak
average. Randomness is keyed by the step, each replica taking its rows of the global batch's
draw (tfglow.replica_noise): the dequantisation noise from [seed, step] and the dropout masks
(Flow++) from fold_in([seed, step], 1), so runs resume exactly and do not depend on the
number of replicas. With `accumulate` = k > 1 (hflow: 4) each replica's batch is cut into k
micro-batches, run one after another in a tf.while_loop (the memory of one micro-batch), and
the gradients and stats are the means over them; micro-batch j takes its rows of the step's noise and the model seed
fold_in(seed, j). With `xla` on a single replica, XLA compiles the whole step (noise, forward, backward, update);
with several replicas or Horovod it compiles the forward and backward pass and the update
stays outside, where the all-reduce of the distribution strategy or Horovod happens.
A model with `graph_optimizer = False` (Flow++) has its step traced and run without
TensorFlow's Grappler (tfglow.grappler; read when the step is built).
"""
import tensorflow as tf

from tfglow import replica_noise
from tfglow.grappler import with_model_setting


class TrainStep:
    def __init__(self, model, optimizer, runtime, seed=0, xla=False, clip_norm=0.0,
                 accumulate=1):
        self.model, self.optimizer, self.rt = model, optimizer, runtime
        self.seed = int(seed)
        self.accumulate = int(accumulate)
        self.clip_norm = float(clip_norm or 0.0)
        self.params = model.trainable_variables
        single = runtime.hvd is None and runtime.num_replicas == 1
        self._xla_whole_step = xla and single
        self._loss_and_grads = (tf.function(self.loss_and_grads, jit_compile=True, autograph=False)
                                if xla and not single else self.loss_and_grads)
        self._fn = with_model_setting(model, self._build())

    def __call__(self, batch, step):
        return self._fn(batch, tf.convert_to_tensor(step, tf.int64))

    def replica_index(self):
        if self.rt.hvd is not None:
            return self.rt.worker_index
        # Global over all workers for tf.distribute strategies (multiworker included).
        return tf.distribute.get_replica_context().replica_id_in_sync_group

    def step_seed(self, step):
        return tf.stack([tf.constant(self.seed, tf.int64), step])

    def noise(self, x, step):
        """This replica's slice of the global batch's dequantisation noise for `step`.

        Drawing the global batch's noise and slicing it makes the run independent of how the
        batch is split over replicas (one device with batch B == two replicas with B / 2).
        """
        return replica_noise.rows(self.model.draw_noise, tf.shape(x), self.step_seed(step),
                                  self.rt.num_replicas, self.replica_index())

    def dropout_seed(self, step):
        """The seed [2] (int32) of the model's dropout masks at `step`."""
        return tf.cast(tf.random.experimental.stateless_fold_in(self.step_seed(step), 1),
                       tf.int32)

    def replica_batch(self):
        """Context: random draws of the model take this replica's rows of the global batch."""
        return replica_noise.replica_batch(self.rt.num_replicas, self.replica_index())

    def loss_and_grads(self, x, y, noise, seed=None):
        with tf.GradientTape() as tape:
            terms = self.model.loss_terms(x, y, noise=noise, seed=seed, training=True)
            loss = tf.reduce_mean(terms["loss"])
        if self.rt.hvd is not None:
            tape = self.rt.hvd.DistributedGradientTape(tape)
            # Horovod 0.28 needs tf.Variables (Keras 3 variables wrap them in .value).
            grads = tape.gradient(loss, [v.value for v in self.params])
        else:
            grads = tape.gradient(loss, self.params)
        return {k: tf.reduce_mean(v) for k, v in terms.items()}, grads

    def accumulated_grads(self, x, y, noise, seed):
        """(mean stats, mean gradients) over `accumulate` equal micro-batches of x [B].

        k > 1: one tf.while_loop (the model is traced once, its iterations run one after
        another); the stats are the model's `stats` (the ones the trainer logs)."""
        k = self.accumulate
        if k == 1:
            return self._loss_and_grads(x, y, noise, seed)
        micro = lambda t: tf.reshape(t, tf.concat([[k, -1], tf.shape(t)[1:]], 0))  # noqa: E731
        xs, ys, us = micro(x), micro(y), micro(noise)
        names = list(self.model.stats)
        no_grad = []  # variables without a gradient (seen while tracing): None, as k == 1

        def body(j, stats, grads):
            s, g = self._loss_and_grads(tf.gather(xs, j), tf.gather(ys, j), tf.gather(us, j),
                                        tf.random.experimental.stateless_fold_in(seed, j))
            no_grad[:] = [i for i, gi in enumerate(g) if gi is None]
            g = [tf.zeros_like(p) if gi is None else tf.cast(gi, p.dtype)
                 for gi, p in zip(g, self.params)]
            return (j + 1, [a + s[n] for a, n in zip(stats, names)],
                    [a + b for a, b in zip(grads, g)])

        init = (tf.constant(0), [tf.zeros([]) for _ in names],
                [tf.zeros_like(p) for p in self.params])
        _, stats, grads = tf.while_loop(lambda j, *_: j < k, body, init, parallel_iterations=1)
        grads = [None if i in no_grad else g / k for i, g in enumerate(grads)]
        return {n: v / k for n, v in zip(names, stats)}, grads

    def _replica_step(self, x, y, step):
        with self.replica_batch():
            stats, grads = self.accumulated_grads(x, y, self.noise(x, step),
                                                  self.dropout_seed(step))
        if self.clip_norm > 0:
            grads = self._mean_over_replicas(grads)
            norm = tf.linalg.global_norm(grads)
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm, use_norm=norm)
        else:
            norm = tf.linalg.global_norm(grads)
        self.optimizer.apply_gradients(zip(grads, self.params))
        stats["grad_norm"] = norm
        return stats

    def _mean_over_replicas(self, grads):
        """The replica-averaged gradients on every replica (Horovod's tape has averaged them);
        the optimizer's own averaging of equal gradients then changes nothing."""
        ctx = tf.distribute.get_replica_context()
        if self.rt.hvd is None and ctx is not None and ctx.num_replicas_in_sync > 1:
            return ctx.all_reduce(tf.distribute.ReduceOp.MEAN, grads)
        return grads

    def _build(self):
        rt = self.rt
        if rt.hvd is not None:
            @tf.function(autograph=False)  # no data-dependent Python control flow: faster tracing
            def step_fn(batch, step):
                stats = self._replica_step(batch[0], batch[1], step)
                return {k: rt.hvd.allreduce(v, op=rt.hvd.Average) for k, v in stats.items()}
            return step_fn

        if self._xla_whole_step:
            return tf.function(lambda batch, step: self._replica_step(batch[0], batch[1], step),
                               jit_compile=True, autograph=False)

        @tf.function(autograph=False)
        def step_fn(batch, step):
            per_replica = rt.strategy.run(self._replica_step, args=(batch[0], batch[1], step))
            return {k: rt.strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                    for k, v in per_replica.items()}
        return step_fn
