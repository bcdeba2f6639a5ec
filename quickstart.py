"""The main job until train.py lands: fit Glow on scikit-learn's digits and write samples.

    python quickstart.py --logdir runs/digits [--steps 400] [--batch 64]

Builds the `digits` preset, runs the data-dependent init, trains with Adam (warmup) for a
few minutes on a CPU, and writes to --logdir: `samples_T*.png` (one grid per temperature),
`log.jsonl` (train/test bits/dim) and a tf.train checkpoint `ckpt-*`.
"""
import argparse
import json
import os
import time

import numpy as np
import tensorflow as tf

import tfglow
from data_prep.digits import load_digits_uint8
from tfglow.grid import image_grid, save_png


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--logdir", default="runs/digits")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=50, help="linear warmup steps")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    tf.keras.utils.set_random_seed(args.seed)
    images, labels = load_digits_uint8()
    n_val = 297
    x_train, x_val = images[:-n_val], images[-n_val:]
    cfg = tfglow.GlowConfig.preset("digits", seed=args.seed)
    model = tfglow.Glow(cfg)
    rng = np.random.default_rng(args.seed)
    model.initialize(x_train[rng.permutation(len(x_train))[:256]])

    import keras
    optimizer = keras.optimizers.Adam(learning_rate=args.lr)
    params = model.trainable_variables

    @tf.function
    def train_step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss_terms(x)["loss"])
        optimizer.apply_gradients(zip(tape.gradient(loss, params), params))
        return loss

    @tf.function
    def val_bpd(x):
        return tf.reduce_mean(model.bits_per_dim(x, seed=[0, 0]))

    os.makedirs(args.logdir, exist_ok=True)
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer)
    manager = tf.train.CheckpointManager(ckpt, args.logdir, max_to_keep=2)
    log = open(os.path.join(args.logdir, "log.jsonl"), "a")
    start = time.time()
    for step in range(1, args.steps + 1):
        optimizer.learning_rate.assign(args.lr * min(1.0, step / max(1, args.warmup)))
        batch = x_train[rng.integers(0, len(x_train), args.batch)]
        loss = float(train_step(tf.constant(batch)))
        if not np.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at step {step}; last checkpoint kept")
        if step % 50 == 0 or step == args.steps:
            test = float(val_bpd(tf.constant(x_val)))
            record = {"step": step, "train_bpd": loss, "test_bpd": test,
                      "seconds": round(time.time() - start, 1)}
            print(json.dumps(record), flush=True)
            log.write(json.dumps(record) + "\n")
            log.flush()
    manager.save(checkpoint_number=args.steps)
    for t in (0.0, 0.5, 0.7, 1.0):
        samples = model.sample(64, temperature=t, seed=args.seed).numpy()
        save_png(os.path.join(args.logdir, f"samples_T{t}.png"), image_grid(samples, scale=4))
    print(f"wrote {args.logdir}/samples_T*.png and checkpoint {manager.latest_checkpoint}")


if __name__ == "__main__":
    main()
