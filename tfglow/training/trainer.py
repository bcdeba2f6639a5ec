"""The training loop of train.py: the original's schedule, made dependable, for every model
family (tfglow.family: Glow, Flow++, hierarchical).

Per step (one compiled function, no Python work inside):
    lr = lr0 * min(1, n_processed / (n_train * epochs_warmup))      (set before the step)
       = lr0 * min(1, step / warmup_steps)         with --warmup_steps (Flow++: 2000)
    loss = mean of the model's loss_terms["loss"] (Glow: bits_x + weight_y * bits_y) on
           dequantised images (noise and dropout keyed by step, replica)
    [--grad_accum micro-batches, gradients averaged (hierarchical: 4)]
    grads averaged over replicas [-> clipped at --grad_clip] -> Adamax/Adam with
    multiplicative decay -> Polyak average (Flow++: an EMA of decay --ema_decay;
    hierarchical: a copy for --ema_copy_epochs, then --ema_decay)
    hierarchical: lr per parameter group, hflow's decay and encoder freeze by epoch
    (tfglow.hierarchical.schedule, set before the step)
Per epoch (`train_its` steps of n_batch_train * replicas images): train.txt, a full validation
every `epochs_full_valid` epochs (Polyak weights; best checkpoint kept), sample grids at the
original's temperatures on the original's schedule (`schedule`). The data-dependent init uses
the first batches of the (augmented) training stream, as the original's `make_batch`.

Departures from the original's loop, on purpose: `--epochs N` trains N epochs (the original's
`range(1, epochs)` trains N - 1), and validation, samples and the best checkpoint use the
Polyak-averaged weights (the original evaluated the raw ones; `--no_polyak` does too).

Dependability: checkpoints every --ckpt_every steps hold the model, optimizer, Polyak averages,
step, epoch, best loss and the data iterator, so a resumed run continues exactly; a non-finite
loss or gradient stops the run before any checkpoint is written, leaving the last good one,
and writes the step and its batch to reproduce it.
"""
import contextlib
import json
import math
import os
import shutil
import time

import numpy as np
import tensorflow as tf

from tfglow.actnorm import data_dependent_init
from tfglow.data import DataError, effective_dal, make_dataset
from tfglow.evaluation import evaluate_split
from tfglow.family import get_family
from tfglow.grid import image_grid, save_png
from tfglow.hierarchical import schedule as group_lr
from tfglow.optim import make_optimizer, warmup_lr
from tfglow.training.checkpoints import resolve_checkpoint, restore_checkpoint, write_hparams
from tfglow.training.distribute import make_runtime
from tfglow.training.logs import Reporter
from tfglow.training.step import TrainStep
from tfglow.training.problems import PROBLEMS

#: The original's sampling temperatures.
TEMPERATURES = (0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def schedule(epoch, epochs_full_valid, epochs_full_sample):
    """(validate, sample) after `epoch` (1-based), as the original's train loop: a full
    validation every epochs_full_valid epochs; samples at epochs 1, 10 and every
    epochs_full_sample, but only in the epochs its report block runs (e < 10, every 10th
    below 50, every epochs_full_valid-th)."""
    report = epoch < 10 or (epoch < 50 and epoch % 10 == 0) or epoch % epochs_full_valid == 0
    validate = epoch % epochs_full_valid == 0
    sample = report and (epoch in (1, 10) or epoch % epochs_full_sample == 0)
    return validate, sample


def learning_rate(hps, step, num_replicas):
    """The learning rate of `step` (0-based): --warmup_steps' linear ramp, 0 at step 0 as
    the official Flow++ code (run_cifar.py), else the original's warmup over epochs."""
    if hps.warmup_steps:
        return hps.lr * min(1.0, step / hps.warmup_steps)
    return warmup_lr(hps.lr, step * num_replicas * hps.n_batch_train, hps.n_train,
                     hps.epochs_warmup)


def warmup_warning(hps, num_replicas, total_steps):
    """A warning when the run ends before the linear warmup reaches --lr, else None."""
    if hps.warmup_steps:
        last = max(total_steps - 1, 0)
        if total_steps < 1 or last >= hps.warmup_steps:
            return None
        return (f"warning: the warmup (--warmup_steps {hps.warmup_steps}) is longer than this "
                f"run ({total_steps} steps): the learning rate peaks at "
                f"{learning_rate(hps, last, num_replicas):.3g} and never reaches --lr "
                f"{hps.lr:g}; lower --warmup_steps for a short run")
    per_step = num_replicas * hps.n_batch_train
    warmup_images = hps.n_train * hps.epochs_warmup
    last = max(total_steps - 1, 0) * per_step  # n_processed before the last step
    if total_steps < 1 or last >= warmup_images:
        return None
    peak = hps.lr * last / warmup_images
    return (f"warning: the warmup (--epochs_warmup {hps.epochs_warmup} = {warmup_images} images) "
            f"is longer than this run ({total_steps} steps = {total_steps * per_step} images): "
            f"the learning rate peaks at {peak:.3g} and never reaches --lr {hps.lr:g}; lower "
            "--epochs_warmup for a short run")


def _save_npy(path, array):
    """np.save to a temporary name, then rename: a reader never sees a partial file."""
    tmp = path + ".tmp.npy"
    np.save(tmp, array)
    os.replace(tmp, path)


class TrainingDiverged(RuntimeError):
    """A non-finite loss or gradient; the message names the step and the reproduction files."""


class Trainer:
    def __init__(self, hps):
        self.hps = hps
        if hps.deterministic:
            tf.config.experimental.enable_op_determinism()
        tf.keras.utils.set_random_seed(hps.seed)
        self.rt = make_runtime(hps.distribute)
        self.strategy = self.rt.strategy
        self.train_its = int(math.ceil(hps.n_train / (hps.n_batch_train * self.rt.num_replicas)))
        self._check_data()
        self.family = get_family(hps.model)
        with self.strategy.scope():
            self.model = self.family.build(hps.model_config(),
                                           gradient_checkpointing=hps.gradient_checkpointing,
                                           precision=hps.precision)
            self.optimizer = make_optimizer(
                hps.optimizer, lr=hps.lr, beta1=hps.beta1, train_its=max(2, self.train_its),
                polyak_epochs=hps.polyak_epochs, weight_decay=hps.weight_decay,
                polyak=not hps.no_polyak, beta2=hps.beta2, polyak_decay=hps.ema_decay,
                **({"polyak_copy_steps": hps.ema_copy_epochs * self.train_its}
                   if hps.ema_copy_epochs else {}))
            self.optimizer.build(self.model.trainable_variables)
            self.grouped = hasattr(self.model, "parameter_groups")
            if self.grouped:
                self.optimizer.set_variable_groups(
                    group_lr.variable_groups(self.model, self.model.trainable_variables),
                    len(group_lr.GROUPS))
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.best_test = tf.Variable(np.inf, dtype=tf.float64, trainable=False, name="best_test")
        self.params = self.model.trainable_variables
        self.stats = self.model.stats
        self.train_iter = iter(self._train_dataset(self._shard))
        self.ckpt = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, step=self.step,
                                        epoch=self.epoch, best_test=self.best_test)
        self._ckpt_dir = self._checkpoint_dir("checkpoints")
        self.manager = tf.train.CheckpointManager(self.ckpt, self._ckpt_dir, max_to_keep=3)
        self.best_manager = tf.train.CheckpointManager(self.ckpt, self._checkpoint_dir("best"),
                                                      max_to_keep=1)
        # Each worker's position in its own data shard, saved with the same step numbers.
        self.data_ckpt = tf.train.Checkpoint(data=self.train_iter)
        self.data_manager = tf.train.CheckpointManager(
            self.data_ckpt, os.path.join(hps.logdir, "data", f"worker{self.rt.worker_index}"),
            max_to_keep=3)
        self.train_step = TrainStep(self.model, self.optimizer, self.rt, hps.seed, hps.xla,
                                    clip_norm=hps.grad_clip, accumulate=hps.grad_accum)

    # ------------------------------------------------------------------ data
    def _check_data(self):
        hps = self.hps
        known = PROBLEMS.get(hps.problem)
        how = known.data_prep if known and known.data_prep else "python -m data_prep ..."
        if hps.data_dir in ("", None):
            raise DataError(None, f"--problem {hps.problem} needs --data_dir: make it with `{how}` "
                                  "(or use --problem digits, which needs no data)")
        if hps.data_dir != "digits" and not tf.io.gfile.isdir(hps.data_dir):
            raise DataError(hps.data_dir, f"--data_dir is not a directory: make it with `{how}`")

    def _dataset(self, split, batch, shard, *, shuffle, repeat, dal=0, seed_offset=0):
        hps = self.hps
        return make_dataset(hps.data_dir, split, hps.image_size, batch, shard=shard,
                            shuffle=shuffle, seed=hps.seed + seed_offset, rnd_crop=hps.rnd_crop,
                            dal=dal, repeat=repeat)

    def _train_dataset(self, shard):
        return self._dataset("train", self.hps.local_batch_train, shard, shuffle=True,
                             repeat=True, dal=effective_dal(self.hps.problem, self.hps.dal))

    @property
    def _shard(self):
        """(num_workers, index): each worker reads its own shard of the files."""
        return (self.rt.num_workers, self.rt.worker_index)

    def _next_batch(self, iterator):
        """The next per-replica batches of this worker's iterator, placed on its replicas.

        A plain tf.data iterator per worker (not a distributed one) so that its position can
        be checkpointed under every strategy.
        """
        return self._place([next(iterator) for _ in range(self.rt.replicas_per_worker)])

    def init_batch(self):
        """Per replica, local_batch_init images: the next ceil(init / train) batches of the
        training stream (augmented as training is), concatenated and cut, as the original's
        `make_batch(train_iterator, ...)`; like it, they are consumed from that stream."""
        hps = self.hps
        k = -(-hps.local_batch_init // hps.local_batch_train)

        def take():
            parts = [next(self.train_iter) for _ in range(k)]
            return tuple(tf.concat([p[i] for p in parts], 0)[:hps.local_batch_init]
                         for i in range(2))

        return self._place([take() for _ in range(self.rt.replicas_per_worker)])

    def _place(self, parts):
        """One (images, labels) per local replica -> the strategy's per-replica value."""
        if self.rt.hvd is not None:
            return parts[0]
        first = self.rt.worker_index * self.rt.replicas_per_worker  # ids are global
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: parts[ctx.replica_id_in_sync_group - first])

    def _local(self, value):
        """Concatenates a per-replica value's local parts into one NumPy array."""
        parts = self.strategy.experimental_local_results(value)
        return np.concatenate([np.asarray(p) for p in parts])

    # ------------------------------------------------------------------ init
    def initialize(self):
        """Data-dependent init on n_batch_init images per replica, moments averaged over all."""
        batch = self.init_batch()
        rt, step = self.rt, self.train_step

        def ddi(x, y):
            init_step = tf.constant(-1, tf.int64)
            with step.replica_batch(), data_dependent_init(
                    **({"mean_fn": rt.mean_over_workers, "workers": rt.num_replicas}
                       if rt.hvd else {})):
                self.model.init_pass(x, y, noise=step.noise(x, init_step),
                                     seed=step.dropout_seed(init_step))
            return tf.constant(0)

        # Eager, not a tf.function: the init pass runs once, and tracing it (every flow step
        # separately, each actnorm assigning from its input) took 15 s before the cifar10
        # preset's first step against 1.7 s eagerly.
        if rt.hvd is not None:
            ddi(batch[0], batch[1])
            # Identical start everywhere (the stats were already averaged); Horovod wants the
            # tf.Variables inside Keras 3 variables.
            rt.hvd.broadcast_variables([v.value for v in self.model.variables], root_rank=0)
        else:
            self.strategy.run(ddi, args=(batch[0], batch[1]))
        self.model.initialized.assign(1.0)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_dir(self, name):
        if not self.rt.is_chief:
            # Multiworker saving is collective, so every worker saves; non-chiefs (of any kind)
            # write to a scratch dir, removed when the run ends.
            return os.path.join(self._scratch_dir, name)
        return os.path.join(self.hps.logdir, name)

    @property
    def _scratch_dir(self):
        return os.path.join(self.hps.logdir, f".worker{self.rt.worker_index}_scratch")

    def _save(self, manager):
        step = int(self.step.numpy())
        # Data position first: a model checkpoint never points at a missing data state.
        self.data_manager.save(checkpoint_number=step)
        manager.save(checkpoint_number=step)

    def restore(self, path):
        checkpoint = resolve_checkpoint(path)
        try:
            # Older layouts (per-step weights, per-variable slots) are converted.
            restore_checkpoint(checkpoint, self.model, self.optimizer, step=self.step,
                               epoch=self.epoch, best_test=self.best_test)
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            detail = str(e).strip().splitlines()[0][:300]
            raise ValueError(f"{checkpoint} does not fit the model and optimizer built from these "
                             f"flags ({detail})") from None
        data = os.path.join(self.data_manager.directory,
                            f"ckpt-{int(self.step.numpy())}")
        if tf.io.gfile.exists(data + ".index"):
            self.data_ckpt.restore(data).assert_existing_objects_matched()
        else:
            print(f"warning: no data position {data}; the data stream restarts", flush=True)
        return checkpoint

    # ------------------------------------------------------------------ evaluation
    def evaluate(self):
        """(mean stats, image count) over the validation split (or its first n_test images),
        with the Polyak weights; the same numbers as `evaluate.py` (tfglow.evaluation)."""
        hps = self.hps
        with self._eval_model():
            results = evaluate_split(self.model, hps.data_dir, "validation",
                                     hps.local_batch_test, seed=hps.seed, max_images=hps.n_test,
                                     rnd_crop=hps.rnd_crop)
        return {k: results[k] for k in self.stats}, results["n_images"]

    def infer(self):
        """The original's --inference: encode the validation images (the first n_test), decode
        them, and write <logdir>/x.npy (uint8 [N, H, W, C], decoded) and z.npy (float32 [N, D],
        every level's latents flattened and concatenated, as the original's flatten_eps)."""
        from tfglow.sampling import decode_latents, encode_images

        hps = self.hps
        ds = self._dataset("validation", hps.local_batch_test, (1, 0), shuffle=False,
                           repeat=False)
        if hps.n_test >= 0:
            ds = ds.unbatch().take(hps.n_test).batch(hps.local_batch_test)
        xs, zs = [], []
        with self._eval_model():
            for images, labels in ds:
                images = images.numpy()
                y = labels.numpy() if self.model.conditional else None
                z = encode_images(self.model, images, y)
                xs.append(decode_latents(self.model, z, y))
                zs.append(np.concatenate([l.reshape(len(images), -1) for l in z], axis=1))
        x, z = np.concatenate(xs), np.concatenate(zs)
        if self.rt.is_chief:
            _save_npy(os.path.join(hps.logdir, "x.npy"), x)
            _save_npy(os.path.join(hps.logdir, "z.npy"), z)
        print(f"inference: encoded and decoded {len(x)} validation images; wrote x.npy "
              f"{list(x.shape)} and z.npy {list(z.shape)} in {hps.logdir}", flush=True)
        return x, z

    @contextlib.contextmanager
    def _eval_model(self):
        """Validation and samples: Polyak / EMA weights (unless --no_polyak), float32 throughout."""
        polyak = (contextlib.nullcontext() if self.hps.no_polyak or not self.optimizer.polyak.enabled
                  else self.optimizer.polyak.swapped(self.params))
        precision = self.model.precision
        self.model.precision = "float32"
        try:
            with polyak:
                yield
        finally:
            self.model.precision = precision

    def sample_grids(self, epoch):
        hps = self.hps
        rows = 10 if hps.image_size <= 64 else 4
        n = rows * rows
        y = tf.constant(np.arange(n) % hps.n_y, tf.int32)
        grids = []
        with self._eval_model():
            for i, t in enumerate(TEMPERATURES):
                x = self.model.sample(n, temperature=t, y=y, seed=hps.seed + i).numpy()
                grids.append(image_grid(x, rows=rows, scale=max(1, 32 // hps.image_size)))
        if self.rt.is_chief:
            for i, grid in enumerate(grids):
                save_png(os.path.join(hps.logdir, f"epoch_{epoch}_sample_{i}.png"), grid)
        if hasattr(self.model, "resample_finer"):
            self.detail_grid(epoch)
        return grids

    def detail_grid(self, epoch, n_images=2, n_variations=5):
        """Level-of-detail grid of a hierarchical model (tfglow.hierarchical.lod) on the first
        validation images: <logdir>/epoch_N_lod.png, a row per (image, kept level)."""
        from tfglow.hierarchical.lod import detail_grid

        hps = self.hps
        images = next(iter(self._dataset("validation", n_images, (1, 0), shuffle=False,
                                         repeat=False)))[0].numpy()
        with self._eval_model():
            cells = detail_grid(self.model, images, n_variations, temperature=0.8, seed=hps.seed)
        grid = image_grid(cells.reshape(-1, *cells.shape[2:]), rows=len(cells),
                          scale=max(1, 32 // hps.image_size))
        if self.rt.is_chief:
            save_png(os.path.join(hps.logdir, f"epoch_{epoch}_lod.png"), grid)
        return cells

    # ------------------------------------------------------------------ the loop
    def run(self):
        hps, rt = self.hps, self.rt
        restore_path = hps.restore_path
        if not restore_path and hps.restore_if_exists and tf.train.latest_checkpoint(self._ckpt_dir):
            restore_path = hps.logdir
        if not restore_path and tf.train.latest_checkpoint(self._ckpt_dir):
            raise FileExistsError(f"{self._ckpt_dir} already has checkpoints: pass --restore_path "
                                  f"{hps.logdir} to resume, or use another --logdir")
        if restore_path:
            restored = self.restore(restore_path)
            print(f"restored {restored} at step {int(self.step.numpy())}", flush=True)
        else:
            self.initialize()
        os.makedirs(hps.logdir, exist_ok=True)
        if hps.inference:
            return self.infer()
        training = not hps.validate_only
        if rt.is_chief and training:  # only now: a refused or failed restore leaves it alone
            write_hparams(hps.logdir, json.loads(hps.to_json()))
        reporter = Reporter(hps.logdir, json.loads(hps.to_json()), enabled=rt.is_chief,
                            progress=not hps.no_progress)
        if not training:
            results, count = self.evaluate()
            reporter.test.log(epoch=int(self.epoch.numpy()), n_images=count, **results)
            print(json.dumps({"test": results, "n_images": count}), flush=True)
            return results
        total = hps.epochs * self.train_its
        warning = warmup_warning(hps, rt.num_replicas,
                                 min(total, hps.max_steps) if hps.max_steps else total)
        if warning and rt.is_chief and int(self.step.numpy()) == 0:
            print(warning, flush=True)
        images_per_step = hps.local_batch_train * rt.num_replicas
        train_time = 0.0
        while int(self.epoch.numpy()) < hps.epochs:
            epoch = int(self.epoch.numpy()) + 1
            first = int(self.step.numpy()) - (epoch - 1) * self.train_its
            reporter.start_epoch(epoch, self.train_its)
            sums, steps, t0 = {}, 0, time.time()
            for it in range(first, self.train_its):
                if hps.max_steps and int(self.step.numpy()) >= hps.max_steps:
                    self._save(self.manager)
                    return None
                stats = self._one_step()
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                steps += 1
                ips = steps * images_per_step / max(time.time() - t0, 1e-9)
                reporter.step(it + 1, bpd=stats["bits_x"], lr=stats["lr"], ips=ips)
                if it % 10 == 0:
                    reporter.scalars(self.step.numpy(), "train", {**stats, "images_per_s": ips})
                if int(self.step.numpy()) % hps.ckpt_every == 0:
                    self._save(self.manager)
            dtrain = time.time() - t0
            train_time += dtrain
            self.epoch.assign(epoch)
            n_processed = int(self.step.numpy()) * rt.num_replicas * hps.n_batch_train
            means = {k: v / max(steps, 1) for k, v in sums.items()}
            if rt.is_chief:
                reporter.train.log(epoch=epoch, n_processed=n_processed,
                                   n_images=int(self.step.numpy()) * images_per_step,
                                   train_time=int(train_time), ips=steps * images_per_step / max(dtrain, 1e-9),
                                   **{k: means[k] for k in self.stats if k in means})
            msg = ""
            validate, sample = schedule(epoch, hps.epochs_full_valid, hps.epochs_full_sample)
            if validate:
                results, count = self.evaluate()
                reporter.scalars(self.step.numpy(), "test", results)
                if results["loss"] < float(self.best_test.numpy()):
                    self.best_test.assign(results["loss"])
                    self._save(self.best_manager)
                    msg = " *"
                if rt.is_chief:
                    reporter.test.log(epoch=epoch, n_processed=n_processed, n_images=count, **results)
                    print(f"epoch {epoch} test bits_x {results['bits_x']:.4f}{msg}", flush=True)
            if sample:
                grids = self.sample_grids(epoch)
                reporter.image(self.step.numpy(), "samples/T0.7", grids[TEMPERATURES.index(0.7)])
            self._save(self.manager)
            reporter.flush()
            if rt.is_chief:
                print(f"epoch {epoch} step {int(self.step.numpy())} train bits_x "
                      f"{means.get('bits_x', float('nan')):.4f} ({dtrain:.1f} s){msg}", flush=True)
        if not self.rt.is_chief:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)
        return None

    def _one_step(self):
        hps = self.hps
        step = int(self.step.numpy())
        lr = learning_rate(hps, step, self.rt.num_replicas)
        self.optimizer.set_learning_rate(lr)
        if self.grouped:
            self.optimizer.set_group_scales(self.group_scales(step))
        batch = self._next_batch(self.train_iter)
        stats = {k: float(v) for k, v in self.train_step(batch, step).items()
                 if k != "pred_error" or k in self.stats}
        if not all(math.isfinite(v) for v in stats.values()):
            self._report_divergence(step, batch, stats)
        self.step.assign_add(1)
        stats["lr"] = lr
        return stats

    def group_scales(self, step):
        """hflow's per-group multipliers of the learning rate at `step` (its 0-based epoch)."""
        freeze = self.hps.freeze_encoder_epoch
        return group_lr.group_scales(step // self.train_its,
                                     group_lr.FREEZE_ENCODER_EPOCH if freeze is None else freeze)

    def _report_divergence(self, step, batch, stats):
        """Writes the step, stats and batch; raises before anything else is saved."""
        hps = self.hps
        base = os.path.join(hps.logdir, f"nonfinite_step{step}_worker{self.rt.worker_index}")
        x, y = (self._local(t) if self.rt.hvd is None else np.asarray(t) for t in batch)
        np.savez(base + ".npz", x=x, y=y)
        report = {"step": step, "stats": stats, "batch": base + ".npz",
                  "noise_seed": [hps.seed, step],
                  "last_checkpoint": self.manager.latest_checkpoint}
        with open(base + ".json", "w") as f:
            json.dump(report, f, indent=1, default=str)
        raise TrainingDiverged(
            f"non-finite loss or gradient at step {step} ({stats}); the last good checkpoint "
            f"{self.manager.latest_checkpoint} is untouched; batch and step written to {base}.*")
