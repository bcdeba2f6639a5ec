"""The compiled train step, shared by the trainer and benchmarks/train_step.py.

    step(batch=(x uint8 [B, H, W, C], y int [B]), step int64) -> mean stats over replicas
        loss, bits_x, bits_y, pred_error, grad_norm (of this replica's averaged-loss gradients)

One tf.function: dequantisation noise, forward, backward, gradient averaging over replicas
(by the optimizer, or Horovod's tape), the optimizer update and the Polyak average. With
`xla` on a single replica, XLA compiles the whole step (noise, forward, backward, update);
with several replicas or Horovod it compiles the forward and backward pass and the update
stays outside, where the all-reduce of the distribution strategy or Horovod happens.
"""
import tensorflow as tf


class TrainStep:
    def __init__(self, model, optimizer, runtime, seed=0, xla=False):
        self.model, self.optimizer, self.rt = model, optimizer, runtime
        self.seed = int(seed)
        self.params = model.trainable_variables
        single = runtime.hvd is None and runtime.num_replicas == 1
        self._xla_whole_step = xla and single
        self._loss_and_grads = (tf.function(self.loss_and_grads, jit_compile=True, autograph=False)
                                if xla and not single else self.loss_and_grads)
        self._fn = self._build()

    def __call__(self, batch, step):
        return self._fn(batch, tf.convert_to_tensor(step, tf.int64))

    def replica_index(self):
        if self.rt.hvd is not None:
            return self.rt.worker_index
        # Global over all workers for tf.distribute strategies (multiworker included).
        return tf.distribute.get_replica_context().replica_id_in_sync_group

    def noise(self, x, step):
        """This replica's slice of the global batch's dequantisation noise for `step`.

        Drawing the global batch's noise and slicing it makes the run independent of how the
        batch is split over replicas (one device with batch B == two replicas with B / 2).
        """
        b = tf.shape(x)[0]
        shape = tf.concat([[b * self.rt.num_replicas], tf.shape(x)[1:]], axis=0)
        noise = tf.random.stateless_uniform(shape, tf.stack([tf.constant(self.seed, tf.int64), step]))
        start = tf.cast(self.replica_index(), tf.int32) * b
        return noise[start:start + b]

    def loss_and_grads(self, x, y, noise):
        with tf.GradientTape() as tape:
            terms = self.model.loss_terms(x, y, noise=noise)
            loss = tf.reduce_mean(terms["loss"])
        if self.rt.hvd is not None:
            tape = self.rt.hvd.DistributedGradientTape(tape)
            # Horovod 0.28 needs tf.Variables (Keras 3 variables wrap them in .value).
            grads = tape.gradient(loss, [v.value for v in self.params])
        else:
            grads = tape.gradient(loss, self.params)
        return {k: tf.reduce_mean(v) for k, v in terms.items()}, grads

    def _replica_step(self, x, y, step):
        stats, grads = self._loss_and_grads(x, y, self.noise(x, step))
        self.optimizer.apply_gradients(zip(grads, self.params))
        stats["grad_norm"] = tf.linalg.global_norm(grads)
        return stats

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
