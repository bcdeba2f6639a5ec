"""ExportedGlow: a tfglow SavedModel (tfglow.export) as numpy functions, for the demo.

Only the SavedModel's signatures and its `config` / `latent_shapes` strings are used, so any
exported tfglow model works (no tfglow.Glow is built). Signature calls are thread-safe (each
call runs its own graph function on its own inputs), so requests may call them concurrently.
"""
import json
import os

import numpy as np

SIGNATURES = ("encode", "decode", "sample", "sample_seeded", "bits_per_dim")


class ExportedGlow:
    """The demo's view of an exported model; `load(path)` once per process.

    Attributes: image_size, channels, ycond, n_y, n_bits_x, latent_shapes (list of (h, w, c)),
    config (the exported GlowConfig dict), path.
    """

    def __init__(self, module, path=""):
        import tensorflow as tf

        self._tf = tf
        self.path = path
        missing = [s for s in SIGNATURES if s not in module.signatures]
        if missing or not hasattr(module, "config") or not hasattr(module, "latent_shapes"):
            raise ValueError(f"{path}: not a tfglow export (missing signatures {missing} or its "
                             f"config); write one with `evaluate.py --export DIR`")
        self._sig = module.signatures
        self._module = module  # keeps the variables the signatures capture alive
        self.config = json.loads(module.config.numpy())
        self.latent_shapes = [tuple(int(d) for d in s)
                              for s in json.loads(module.latent_shapes.numpy())]
        self.image_size = int(self.config["image_size"])
        self.channels = int(self.config["n_channels"])
        self.ycond = bool(self.config.get("ycond", False))
        self.n_y = int(self.config.get("n_y", 1))
        self.n_bits_x = int(self.config.get("n_bits_x", 8))

    @classmethod
    def load(cls, path):
        """Loads the SavedModel at `path`; ValueError naming the path if it is not one."""
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise ValueError(f"{path}: no saved_model.pb there (export a run with "
                             f"`evaluate.py --restore_path RUN --export {path}`)")
        import tensorflow as tf

        try:
            module = tf.saved_model.load(path)
        except Exception as e:  # noqa: BLE001 - TF raises many kinds for a broken directory
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ValueError(f"{path}: cannot load the SavedModel ({type(e).__name__}: "
                             f"{first[:200]})") from None
        return cls(module, path)

    @property
    def image_shape(self):
        return (self.image_size, self.image_size, self.channels)

    def summary(self):
        """JSON-able description for the page."""
        keys = ("n_levels", "depth", "width", "flow_coupling", "flow_permutation", "learntop")
        return {"image_size": self.image_size, "channels": self.channels, "ycond": self.ycond,
                "n_y": self.n_y, "n_bits_x": self.n_bits_x,
                "latent_shapes": [list(s) for s in self.latent_shapes],
                **{k: self.config[k] for k in keys if k in self.config}}

    # ------------------------------------------------------------------ signatures

    def _y(self, y, n):
        """The `y` keyword for ycond models (int32 [n]); nothing for unconditional ones."""
        if not self.ycond:
            return {}
        y = np.zeros([n], np.int32) if y is None else np.asarray(y, np.int32).reshape(-1)
        if y.size == 1 and n != 1:
            y = np.full([n], int(y[0]), np.int32)
        return {"y": self._tf.constant(y)}

    def encode(self, images, y=None):
        """uint8 [B, H, W, C] -> list of L float32 latents [B, h, w, c] (exact)."""
        images = np.asarray(images, np.uint8)
        out = self._sig["encode"](images=self._tf.constant(images), **self._y(y, len(images)))
        return [out[f"z{i}"].numpy() for i in range(len(self.latent_shapes))]

    def decode(self, zs, y=None):
        """List of L latents [B, h, w, c] -> uint8 images [B, H, W, C]."""
        zs = {f"z{i}": self._tf.constant(np.asarray(z, np.float32)) for i, z in enumerate(zs)}
        n = int(zs["z0"].shape[0])
        return self._sig["decode"](**zs, **self._y(y, n))["images"].numpy()

    def bits_per_dim(self, images, y=None):
        """uint8 [B, H, W, C] -> float [B], the dequantised bits/dim (tfglow.evaluation)."""
        images = np.asarray(images, np.uint8)
        out = self._sig["bits_per_dim"](images=self._tf.constant(images),
                                        **self._y(y, len(images)))
        return out["bits_per_dim"].numpy()

    def sample(self, n, temperature, seed, y=None):
        """n uint8 images at `temperature`, reproducible by `seed` (the sample_seeded signature)."""
        tf = self._tf
        return self._sig["sample_seeded"](
            n=tf.constant(int(n), tf.int32), temperature=tf.constant(float(temperature), tf.float32),
            seed=tf.constant(int(seed), tf.int32), **self._y(y, n))["images"].numpy()

    def warm_up(self):
        """Calls every signature once (the first call of each takes seconds: graph setup), so
        the first user request is as fast as the rest."""
        blank = np.zeros([1, *self.image_shape], np.uint8)
        self.decode(self.encode(blank))
        self.bits_per_dim(blank)
        self.sample(1, 0.7, 0)
