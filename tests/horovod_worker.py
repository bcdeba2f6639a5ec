"""Worker launched by tests/test_horovod.py through ``horovodrun --gloo -np 2``.

Inside ``tf.function`` it does, on every rank:
  1. an allreduce (sum and average) of rank-dependent tensors;
  2. a broadcast of the model's variables from rank 0 (each rank starts from different weights);
  3. one ``hvd.DistributedGradientTape`` step on a tiny Keras model with rank-dependent data,
     applied with ``tfglow.optim.Adamax``.
It writes ``<outdir>/rank<r>.npz`` with the results. The data/model helpers are importable
without Horovod so that the test can compute the single-process reference.
"""

import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

N_IN, N_HIDDEN, N_OUT, N_EXAMPLES = 4, 3, 2, 8
OPT_KW = dict(learning_rate=0.05, beta1=0.9, beta2=0.9, weight_decay=0.999)


def initial_weights(rank):
    """Different on every rank, so only the broadcast makes them agree."""
    rng = np.random.default_rng(1000 + rank)
    return [rng.normal(size=(N_IN, N_HIDDEN)).astype(np.float32),
            rng.normal(size=(N_HIDDEN,)).astype(np.float32),
            rng.normal(size=(N_HIDDEN, N_OUT)).astype(np.float32),
            rng.normal(size=(N_OUT,)).astype(np.float32)]


def data(rank):
    rng = np.random.default_rng(2000 + rank)
    x = rng.normal(size=(N_EXAMPLES, N_IN)).astype(np.float32)
    y = rng.normal(size=(N_EXAMPLES, N_OUT)).astype(np.float32)
    return x, y


def build_model(weights):
    import keras
    model = keras.Sequential([
        keras.Input((N_IN,)),
        keras.layers.Dense(N_HIDDEN, activation="tanh"),
        keras.layers.Dense(N_OUT),
    ])
    model.set_weights(weights)
    return model


def loss_fn(model, x, y):
    import tensorflow as tf
    return tf.reduce_mean(tf.square(model(x) - y))


def main(outdir):
    import tensorflow as tf
    import horovod.tensorflow as hvd

    import tfglow.optim as optim

    hvd.init()
    rank, size = hvd.rank(), hvd.size()

    @tf.function
    def collectives():
        t = tf.constant([1.0, 10.0]) * float(rank + 1)
        return (hvd.allreduce(t, op=hvd.Sum), hvd.allreduce(t, op=hvd.Average),
                hvd.allgather(tf.constant([rank], tf.int32)))

    red_sum, red_avg, gathered = collectives()

    model = build_model(initial_weights(rank))
    variables = model.trainable_variables
    # Horovod 0.28 calls ``.ref()`` on the sources of DistributedGradientTape.gradient, which
    # Keras 3 variables lack: hand it the backing tf.Variables (same storage).
    tf_variables = [v.value for v in variables]
    opt = optim.Adamax(**OPT_KW)
    opt.build(variables)

    @tf.function
    def broadcast():
        hvd.broadcast_variables(variables, root_rank=0)

    broadcast()
    after_broadcast = [v.numpy() for v in variables]

    x, y = data(rank)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(model, x, y)
        tape = hvd.DistributedGradientTape(tape)  # averages gradients over ranks
        grads = tape.gradient(loss, tf_variables)
        opt.apply_gradients(zip(grads, variables))
        return loss, grads

    loss, grads = train_step(tf.constant(x), tf.constant(y))
    np.savez(
        os.path.join(outdir, f"rank{rank}.npz"),
        rank=rank, size=size,
        red_sum=red_sum.numpy(), red_avg=red_avg.numpy(), gathered=gathered.numpy(),
        loss=loss.numpy(),
        **{f"after_broadcast_{i}": w for i, w in enumerate(after_broadcast)},
        **{f"grad_{i}": g.numpy() for i, g in enumerate(grads)},
        **{f"final_{i}": v.numpy() for i, v in enumerate(variables)},
        **{f"m1_{i}": opt.slot("m1", v).numpy() for i, v in enumerate(variables)},
        **{f"m2_{i}": opt.slot("m2", v).numpy() for i, v in enumerate(variables)},
        **{f"polyak_{i}": a.numpy() for i, a in enumerate(opt.polyak.values(variables))},
    )
    print(f"[horovod_worker] rank {rank}/{size} done, loss {float(loss):.6f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
