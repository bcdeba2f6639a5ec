"""TensorFlow's graph optimizer (Grappler), on or off for the function calls of one thread.

    with graph_optimizer(False):
        step(batch, i)        # traced, optimized and run without Grappler

A tf.function call takes its TensorFlow config from the calling thread's function-call
options (tf.function's FunctionCallOptions), and the runtime optimizes a function once per
config it is called with. `graph_optimizer(False)` sets `disable_meta_optimizer` in that
config, on this thread only, and restores the options it found on exit: the process-wide
`tf.config.optimizer` settings and other threads are untouched.

Why a model family may want it off (`DensityModel.graph_optimizer`): for the Flow++ cifar10
preset Grappler took ~14 of the ~46 s of the train step's first call, and the steps after it
ran no slower without it; the peak memory was ~0.3 GB (4%) higher (README, Flow++). The
trainer's step (tfglow.training.step) and the evaluator's compiled functions
(tfglow.evaluation, through `with_model_setting`) follow the model's setting. For Glow it
stays on: without it the cifar10 preset's width-128 step ran at 0.76x.
"""
import contextlib
import functools

from tensorflow.core.protobuf import config_pb2
from tensorflow.python.eager import context


def _options_without_grappler(options):
    config = config_pb2.ConfigProto()
    config.ParseFromString(options.config_proto_serialized)
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    return context.FunctionCallOptions(executor_type=options.executor_type,
                                       config_proto=config)


@contextlib.contextmanager
def graph_optimizer(enabled=True):
    """Runs the block's tf.function calls with Grappler on (a no-op) or off (module docstring)."""
    if enabled:
        yield
        return
    ctx = context.context()
    saved = ctx.function_call_options
    ctx.function_call_options = _options_without_grappler(saved)
    try:
        yield
    finally:
        ctx.function_call_options = saved


def grappler_disabled():
    """Whether this thread's function calls run without Grappler now."""
    config = config_pb2.ConfigProto()
    config.ParseFromString(context.context().function_call_options.config_proto_serialized)
    return config.graph_options.rewrite_options.disable_meta_optimizer


def with_model_setting(model, fn):
    """fn (a tf.function) if the model keeps Grappler (`model.graph_optimizer`, default True),
    else a function that calls it inside graph_optimizer(False), every call (the runtime
    optimizes a function once per config, so a call with Grappler would optimize it again)."""
    if getattr(model, "graph_optimizer", True):
        return fn

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with graph_optimizer(False):
            return fn(*args, **kwargs)
    return call
