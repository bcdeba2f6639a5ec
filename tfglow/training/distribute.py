"""--distribute: one description of the workers, for tf.distribute strategies and Horovod.

    none         the default strategy (one device)
    mirrored     MirroredStrategy over the GPUs of this machine (or its logical CPUs)
    multiworker  MultiWorkerMirroredStrategy across machines, from TF_CONFIG
    horovod      one process per device under horovodrun; custom loop with horovod.tensorflow
    auto         horovod under a horovodrun / mpiexec / srun-with-MPI launch (so the original's
                 `mpiexec -n 8 python train.py ...` works), multiworker if TF_CONFIG is set,
                 mirrored if there are several GPUs, else none

Global batch = per-replica batch x replicas. Each worker (process) reads its own shard of the
files; replicas of one worker split that worker's batch.
"""
import dataclasses
import json
import os

import tensorflow as tf


@dataclasses.dataclass
class Runtime:
    kind: str
    strategy: tf.distribute.Strategy
    num_workers: int = 1
    worker_index: int = 0
    replicas_per_worker: int = 1
    hvd: object = None

    @property
    def num_replicas(self):
        return self.num_workers * self.replicas_per_worker

    @property
    def is_chief(self):
        return self.worker_index == 0

    def mean_over_workers(self, t):
        """Averages a tensor over Horovod workers (tf.distribute replicas reduce themselves)."""
        if self.hvd is None or self.num_workers == 1:
            return t
        return self.hvd.allreduce(t, op=self.hvd.Average)


def _local_devices():
    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


#: Environment variables holding the process count of a launcher, by launcher.
LAUNCH_SIZE_VARS = (
    "HOROVOD_SIZE",           # horovodrun (Gloo)
    "OMPI_COMM_WORLD_SIZE",   # Open MPI mpiexec / mpirun (and horovodrun over it)
    "PMI_SIZE",               # MPICH, Intel MPI (Hydra)
    "PMIX_SIZE",              # PMIx launchers
    "MV2_COMM_WORLD_SIZE",    # MVAPICH2
)


def launched_processes(environ=None):
    """(variable, process count) of a Horovod/MPI launch seen in the environment, else None."""
    environ = os.environ if environ is None else environ
    for name in LAUNCH_SIZE_VARS:
        value = environ.get(name, "")
        if value.strip().isdigit():
            return name, int(value)
    return None


def auto_kind(environ=None, n_gpus=None):
    """What --distribute auto picks for this environment (see the module docstring)."""
    environ = os.environ if environ is None else environ
    if launched_processes(environ):
        return "horovod"
    if environ.get("TF_CONFIG"):
        return "multiworker"
    if n_gpus is None:
        n_gpus = len(tf.config.list_logical_devices("GPU"))
    return "mirrored" if n_gpus > 1 else "none"


def make_runtime(kind="auto"):
    if kind == "auto":
        kind = auto_kind()
        if kind == "horovod":
            var, n = launched_processes()
            print(f"--distribute auto: {var}={n}, training with Horovod", flush=True)
    if kind == "none":
        return Runtime("none", tf.distribute.get_strategy())
    if kind == "mirrored":
        strategy = tf.distribute.MirroredStrategy(_local_devices())
        return Runtime("mirrored", strategy, replicas_per_worker=strategy.num_replicas_in_sync)
    if kind == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("--distribute multiworker needs TF_CONFIG (cluster and task) in the environment")
        task = json.loads(os.environ["TF_CONFIG"])["task"]
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        workers = strategy.cluster_resolver.cluster_spec().num_tasks("worker")
        return Runtime("multiworker", strategy, num_workers=workers, worker_index=int(task["index"]),
                       replicas_per_worker=strategy.num_replicas_in_sync // workers)
    if kind == "horovod":
        try:
            import horovod.tensorflow as hvd
        except ImportError as e:
            launch = launched_processes()
            why = f"this is a Horovod/MPI launch ({launch[0]}={launch[1]})" if launch else \
                "--distribute horovod"
            raise ImportError(f"{why} needs Horovod: build it with tools/build_horovod.sh "
                              f"({type(e).__name__}: {e})") from None
        hvd.init()
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:  # one GPU per process
            tf.config.set_visible_devices(gpus[hvd.local_rank()], "GPU")
        return Runtime("horovod", tf.distribute.get_strategy(), num_workers=hvd.size(),
                       worker_index=hvd.rank(), hvd=hvd)
    raise ValueError(f"--distribute {kind!r}: choose auto, none, mirrored, multiworker or horovod")
