"""What a run reports: the original's train.txt / test.txt, TensorBoard, a progress bar.

train.txt and test.txt are JSON lines as the original's ResultLogger: the first line is the
hyper-parameters, then one object per epoch (train) or per validation (test).
"""
import json
import os
import sys
import time

import tensorflow as tf


class ResultLogger:
    """Appends JSON lines to a file (flushed per line, so a killed run keeps its log)."""

    def __init__(self, path, hparams=None):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fresh = not os.path.exists(path)
        self._f = open(path, "a")
        if fresh and hparams is not None:
            self.log(**hparams)

    def log(self, **record):
        self._f.write(json.dumps(record, sort_keys=True, default=float) + "\n")
        self._f.flush()

    def close(self):
        self._f.close()


class Reporter:
    """train.txt, test.txt and TensorBoard scalars/images of the chief worker; no-ops elsewhere."""

    def __init__(self, logdir, hparams, enabled=True, progress=True):
        self.enabled = enabled
        self.progress = progress and enabled and sys.stdout.isatty()
        self._bar = None
        if not enabled:
            return
        self.train = ResultLogger(os.path.join(logdir, "train.txt"), hparams)
        self.test = ResultLogger(os.path.join(logdir, "test.txt"), hparams)
        self.writer = tf.summary.create_file_writer(os.path.join(logdir, "tensorboard"))

    def scalars(self, step, prefix, values):
        if not self.enabled:
            return
        with self.writer.as_default(step=int(step)):
            for name, value in values.items():
                tf.summary.scalar(f"{prefix}/{name}", float(value))

    def image(self, step, name, grid):
        if not self.enabled:
            return
        with self.writer.as_default(step=int(step)):
            tf.summary.image(name, grid[None], max_outputs=1)

    def start_epoch(self, epoch, steps):
        if self.progress:
            import keras
            print(f"epoch {epoch}")
            self._bar = keras.utils.Progbar(steps, stateful_metrics=["bpd", "ips", "lr"])
        self._t0 = time.time()

    def step(self, i, **values):
        if self._bar is not None:
            self._bar.update(i, values=list(values.items()))

    def flush(self):
        if self.enabled:
            self.writer.flush()
