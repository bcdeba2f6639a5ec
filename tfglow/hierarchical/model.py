"""HierarchicalFlow: the invertible hierarchical model (paper 004; hflow network.py:1485-1893).

Spaces. Images are uint8 [B, H, W, C]; `preprocess` maps them to x = p / 256 - 0.5 in
[-0.5, 0.5) (hflow's data space before dequantisation); the networks work on 4 x (init_scale;
the log-determinant gets D log 4, network.py:1806).

Latents (encode; exact: decode(encode(x)) == x up to float error):
    y_0 = 4 x,  y_i = encoder_i(...) at R_i (i = 1 .. L-1),  t = end encoder [1, 1, E]
    z_i = f_i^-1(y_i; decoder_i(y_{i+1}))   (eq. 7)   z_end = [f_prior^-1(y_prior), f_1^-1(y_1; y_prior)]
    encode returns [z_0, ..., z_{L-1}, z_end] (finest first).

Objective (eq. 5 and 12, with the noise of eq. 11). With y~_i = y_i + alpha_i sigma(Y_i) eps:
    log p_i = log N(z_i) + log|dz_i/dy~_i| + H(q_i)             (H: the detached noise entropy)
    ELBO = sum_i log p_i                                        (per image, nats)
    bits_x = -ELBO / (D ln 2) + 8                               (8: hflow's `disc()`, the
                                                                 1/256 bin width of x)
    loss = sum_i w_i (-log p_i) / (D_i ln 2) - log p_prior / (P ln 2) - log p_1 / ((E - P) ln 2)
Training (training=True) mirrors hflow: every flow's input is detached; the decoders see the
clean coarser latent plus their own independent noise (decoder alphas) and the y_1 flow is
conditioned on the clean y_prior. Evaluation (training=False) uses ONE noisy sample y~ for both
the flow targets and the decoders' inputs, so that bits_x is a true ELBO bound; hflow's logged
"bpd_eval" instead decodes from the clean latents (and still noises the end block's decoder
input), which is not a bound in general. x is dequantised by u ~ U[0, 1/256) (`noise`); training
adds hflow's N(0, 0.005^2) augmentation too.
"""
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfglow.family import DensityModel
from tfglow.hierarchical.config import HierarchicalConfig
from tfglow.hierarchical.eqlr import EqConv2D, GROUPS
from tfglow.hierarchical.endblock import EndBlock
from tfglow.hierarchical.level import Level
from tfglow.hierarchical.noise import entropy, gaussian_log_q, minibatch_sigma
from tfglow.objective import standard_normal_logp

tfd = tfp.distributions

DISC_BITS = 8.0


def sub_seed(seed, i):
    return tf.random.experimental.stateless_fold_in(tf.convert_to_tensor(seed, tf.int32), i)


class HierarchicalFlow(DensityModel, keras.Model):
    """The hierarchical model of a HierarchicalConfig (see the module docstring)."""

    float_input = "float images in [-0.5, 0.5) (model.preprocess plus dequantization noise)"
    min_batch = 2  # sigma(X) of eq. 11 is a minibatch statistic

    def __init__(self, config=None, name="hierarchical", precision="float32",
                 gradient_checkpointing=False, **kwargs):
        super().__init__(name=name, **kwargs)
        if precision != "float32":
            raise ValueError(f"HierarchicalFlow precision={precision!r}: only float32 is "
                             "supported")
        self.precision = precision
        self.config = config if config is not None else HierarchicalConfig()
        if not isinstance(self.config, HierarchicalConfig):
            raise TypeError(f"HierarchicalFlow(config): expected a HierarchicalConfig, got "
                            f"{type(config).__name__}")
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        self.levels = [Level(cfg, i, rng, name=f"level{i}") for i in range(cfg.n_levels)]
        self.end = EndBlock(cfg, rng, name="end")
        self.latent_shapes = cfg.latent_shapes
        self.stats = ("loss", "bits_x") + tuple(
            f"bits_{r}" for r in cfg.resolutions) + ("bits_prior", "bits_1")
        self.initialized = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                           name="initialized")
        self.gradient_checkpointing = gradient_checkpointing
        self.built = True

    @property
    def gradient_checkpointing(self):
        """True: every flow step, decoder and encoder is recomputed in the backward pass
        (tfglow.hierarchical.step.recomputed): the same loss, gradients equal to float rounding,
        a fraction of the activation memory, about one more forward pass. Read at tracing."""
        return self._gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, mode):
        if isinstance(mode, bool) or mode in (0, 1):
            mode = bool(mode)
        else:
            raise ValueError(f"HierarchicalFlow gradient_checkpointing={mode!r} must be 0 or 1 "
                             "(recompute each step, decoder and encoder)")
        self._gradient_checkpointing = mode
        for level in self.levels:
            level.checkpoint = mode
        for flow in (self.end.prior_flow, self.end.rest_flow):
            flow.checkpoint = mode

    @property
    def flows(self):
        """Every ConditionalFlow: the levels' (finest first), then the end block's two."""
        return [level.flow for level in self.levels] + [self.end.prior_flow, self.end.rest_flow]

    @property
    def share_traces(self):
        """True (default): in a graph, each level's steps of one structure run through one
        traced function (tfglow.hierarchical.shared_trace). False: every step traced."""
        return all(flow.share_traces for flow in self.flows)

    @share_traces.setter
    def share_traces(self, on):
        for flow in self.flows:
            flow.share_traces = bool(on)

    # ----------------------------------------------------------------- data space
    def preprocess(self, x_uint8):
        """uint8 [B, H, W, C] -> float32 p / 256 - 0.5."""
        return tf.cast(self._check_images(x_uint8, "x_uint8"), tf.float32) / 256.0 - 0.5

    def postprocess(self, x):
        """float x -> uint8 floor((x + 0.5) * 256), clipped to 0..255."""
        return tf.cast(tf.clip_by_value(tf.floor((x + 0.5) * 256.0), 0.0, 255.0), tf.uint8)

    def bin_centres(self, x_uint8):
        return self.preprocess(x_uint8) + 0.5 / 256.0

    def draw_noise(self, shape, seed):
        """Uniform dequantisation noise u ~ U[0, 1/256), stateless in seed [2]."""
        return tf.random.stateless_uniform(shape, seed) / 256.0

    # ----------------------------------------------------------------- pieces
    def encoder_latents(self, x):
        """x float [B, H, W, C] -> ([y_0 = 4x, y_1, ..., y_{L-1}], t [B, 1, 1, E])."""
        ys = [x * self.config.init_scale]
        h = ys[0]
        for level in self.levels:
            y_next, h = level.encode_features(h)
            if y_next is not None:
                ys.append(y_next)
        return ys, self.end.encode_features(h)

    def _end_flows(self, t, cond_source):
        prior, rest = self.end.split(t)
        return self.end.flows_forward(prior, rest, cond_source)

    # ----------------------------------------------------------------- encode / decode
    def encode(self, x, y=None):
        """Float x [B, H, W, C] in preprocess's space -> [z_0, ..., z_{L-1}, z_end] (exact,
        deterministic: no encoder noise). y: ignored (unconditional)."""
        x = self._check_float_images(x, "x")
        ys, t = self.encoder_latents(x)
        prior, _ = self.end.split(t)
        zp, zr, _, _ = self._end_flows(t, prior)
        g, coarse = self.end.decoder_inputs(t)
        zs, skip = [None] * len(self.levels), None
        for i in reversed(range(len(self.levels))):
            affine, cond, skip = self.levels[i].condition(coarse, g, skip)
            zs[i], _ = self.levels[i].flow.forward(ys[i], cond=cond, affine=affine)
            coarse = ys[i]
        return zs + [tf.concat([zp, zr], -1)]

    def decode(self, zs, y=None, return_latents=False):
        """[z_0, ..., z_end] -> float x [B, H, W, C]; return_latents: also ([y_0 .. y_{L-1}], t)
        as generated (y_0 = 4 x)."""
        zs = self._check_latents(zs)
        p = self.config.prior_channels
        prior, rest = self.end.flows_inverse(zs[-1][..., :p], zs[-1][..., p:])
        t = tf.concat([prior, rest], -1)
        g, coarse = self.end.decoder_inputs(t)
        ys, skip = [None] * len(self.levels), None
        for i in reversed(range(len(self.levels))):
            affine, cond, skip = self.levels[i].condition(coarse, g, skip)
            ys[i], _ = self.levels[i].flow.inverse(zs[i], cond=cond, affine=affine)
            coarse = ys[i]
        x = ys[0] / self.config.init_scale
        return (x, ys, t) if return_latents else x

    # ----------------------------------------------------------------- objective
    def _terms(self, x, seed, training=False, alphas=True):
        """Per-image log-terms of the objective (see the module docstring).

        Returns {"log_p": [per level, then prior, y_1] each [B] (incl. entropy), "log_q": [B]
        (exact log q(y~|x) of the drawn noise), "entropy": [B]}. alphas=False: no noise."""
        cfg = self.config
        ys, t = self.encoder_latents(x)
        prior, rest = self.end.split(t)
        k = [0]

        def draw(shape):
            k[0] += 1
            return tf.random.stateless_normal(shape, sub_seed(seed, k[0]), dtype=x.dtype)

        log_q, ent_total = 0.0, 0.0

        def noisy(y, alpha):
            nonlocal log_q, ent_total
            if not alphas or alpha == 0:
                return y, 0.0
            std = alpha * tf.stop_gradient(minibatch_sigma(y))
            eps = draw(tf.shape(y))
            h = entropy(y, std)
            log_q = log_q + tf.stop_gradient(gaussian_log_q(eps, std))
            ent_total = ent_total + h
            return y + std * eps, h

        def decoder_noisy(y, alpha):
            if not (training and alphas) or alpha == 0:
                return y
            return y + alpha * minibatch_sigma(y) * draw(tf.shape(y))

        prior_n, h_p = noisy(prior, cfg.end_flow_noise[0])
        rest_n, h_r = noisy(rest, cfg.end_flow_noise[1])
        cond_source = prior if training else prior_n
        zp, ldp = self.end.prior_flow.forward(tf.stop_gradient(prior_n))
        zr, ldr = self.end.rest_flow.forward(tf.stop_gradient(rest_n),
                                             cond=self.end.cond_encoder(cond_source))
        end_terms = [standard_normal_logp(zp) + ldp + h_p, standard_normal_logp(zr) + ldr + h_r]
        if training:
            t_dec = tf.concat([decoder_noisy(prior, cfg.end_decoder_noise[0]),
                               decoder_noisy(rest, cfg.end_decoder_noise[1])], -1)
        else:
            t_dec = tf.concat([prior_n, rest_n], -1)
        g, coarse = self.end.decoder_inputs(t_dec)
        level_terms, skip = [None] * len(self.levels), None
        noisy_ys = [ys[0]] + [None] * (len(ys) - 1)
        entropies = [0.0] * len(ys)
        for i in range(1, len(ys)):
            noisy_ys[i], entropies[i] = noisy(ys[i], cfg.flow_noise[i - 1])
        for i in reversed(range(len(self.levels))):
            affine, cond, skip = self.levels[i].condition(coarse, g, skip)
            z, ld = self.levels[i].flow.forward(tf.stop_gradient(noisy_ys[i]), cond=cond,
                                                affine=affine)
            if i == 0:
                ld = ld + cfg.n_dims * np.log(cfg.init_scale)
            level_terms[i] = standard_normal_logp(z) + ld + entropies[i]
            if i > 0:
                coarse = (decoder_noisy(ys[i], cfg.decoder_noise[i - 1]) if training
                          else noisy_ys[i])
        return {"log_p": level_terms + end_terms, "log_q": log_q, "entropy": ent_total}

    def _dims(self):
        cfg = self.config
        return [int(np.prod(s)) for s in cfg.latent_shapes[:-1]] + [
            cfg.prior_channels, cfg.end_channels - cfg.prior_channels]

    def loss_terms(self, x_uint8, y=None, noise=None, seed=None, training=False, alphas=True):
        """Objective of uint8 images [B >= 2]; dict of [B] tensors: loss (hflow's weighted
        per-level training loss), bits_x (ELBO bound, bits/dim), bits_<R> per level and
        bits_prior, bits_1 (each -log p_i / (D_i ln 2), bits per dimension of that latent,
        entropy included), elbo (nats), log_q (nats), log_ratio (nats: log p(x, y~) -
        log q(y~|x) - D ln 256 of the drawn y~, one importance sample of tfglow.evaluation; its
        mean over y~ is -bits_x D ln 2). noise: u [B, H, W, C] in [0, 1/256)
        (drawn from seed if None); seed [2] draws all noise (random if None). alphas=False
        switches the encoder noise off (deterministic encoders; bits_x is then not a bound)."""
        cfg = self.config
        x = self.preprocess(x_uint8)
        if seed is None:
            seed = tf.random.uniform([2], 0, 2 ** 31 - 1, dtype=tf.int32)
        seed = tf.convert_to_tensor(seed, tf.int32)
        if noise is None:
            noise = self.draw_noise(tf.shape(x), sub_seed(seed, 1000))
        x = x + tf.cast(noise, x.dtype)
        if training and cfg.data_noise_std > 0:
            x = x + cfg.data_noise_std * tf.random.stateless_normal(tf.shape(x),
                                                                    sub_seed(seed, 1001))
        terms = self._terms(x, seed, training=training, alphas=alphas)
        log_p, dims = terms["log_p"], self._dims()
        weights = list(cfg.loss_weights) + [1.0, 1.0]
        loss = tf.add_n([w * -lp / (d * np.log(2.0)) for w, lp, d in zip(weights, log_p, dims)])
        elbo = tf.add_n(log_p)
        out = {"loss": loss, "bits_x": -elbo / (cfg.n_dims * np.log(2.0)) + DISC_BITS,
               "elbo": elbo, "log_q": terms["log_q"] + tf.zeros_like(elbo),
               "log_ratio": elbo - terms["entropy"] - terms["log_q"]
               - cfg.n_dims * DISC_BITS * np.log(2.0)}
        names = [f"bits_{r}" for r in cfg.resolutions] + ["bits_prior", "bits_1"]
        for name, lp, d in zip(names, log_p, dims):
            out[name] = -lp / (d * np.log(2.0))
        return out

    def bits_per_dim(self, x_uint8, y=None, noise=None, seed=None):
        """ELBO bound in bits/dim [B] (one encoder-noise sample, shared by flows and decoders)."""
        return self.loss_terms(x_uint8, noise=noise, seed=seed)["bits_x"]

    def call(self, x_uint8):
        return self.bits_per_dim(x_uint8)

    def importance_weighted_bits_per_dim(self, x_uint8, n_samples, seed=None, noise=None):
        """IWAE bound [B] (float64) with n_samples encoder-noise samples per image, at one
        dequantisation sample: -(log mean_s exp(log p(x, y~_s) - log q(y~_s|x))) / (D ln 2) + 8.
        The noise scales sigma(X) are statistics of the batch, the same for every sample."""
        n_samples = int(n_samples)
        if n_samples < 1:
            raise ValueError(f"n_samples={n_samples} must be >= 1")
        if seed is None:
            seed = tf.random.uniform([2], 0, 2 ** 31 - 1, dtype=tf.int32)
        seed = tf.convert_to_tensor(seed, tf.int32)
        x = self.preprocess(x_uint8)
        if noise is None:
            noise = self.draw_noise(tf.shape(x), sub_seed(seed, 1000))
        x = x + tf.cast(noise, x.dtype)
        ratios = []
        for s in range(n_samples):
            terms = self._terms(x, sub_seed(seed, 2000 + s))
            joint = tf.add_n(terms["log_p"]) - terms["entropy"]
            ratios.append(tf.cast(joint - terms["log_q"], tf.float64))
        r = tf.stack(ratios)
        m = tf.reduce_max(r, 0)
        log_mean = m + tf.math.log(tf.reduce_mean(tf.exp(r - m), 0))
        return -log_mean / (self.config.n_dims * np.log(2.0)) + DISC_BITS

    # ----------------------------------------------------------------- sampling
    @property
    def unit_temperature_latents(self):
        """Latents sample(temperature=T) draws at 1 whatever T: the 1x1 one (hflow)."""
        return (len(self.latent_shapes) - 1,)

    def _temperatures(self, temperature, temperatures):
        n = len(self.latent_shapes)
        if temperatures is None:
            # hflow samples every level at T and the 1x1 latent at 1 (network.py:1837).
            unit = self.unit_temperature_latents
            return [1.0 if i in unit else float(temperature) for i in range(n)]
        temperatures = [float(v) for v in temperatures]
        if len(temperatures) != n:
            raise ValueError(f"temperatures needs {n} values (levels finest first, then the 1x1 "
                             f"latent); got {len(temperatures)}")
        return temperatures

    def draw_latents(self, n, temperature=0.8, temperatures=None, seed=None):
        """[z_0, ..., z_end] with z_i ~ N(0, T_i^2 I)."""
        n = int(n)
        if n < 1:
            raise ValueError(f"sample: n={n} must be >= 1")
        temps = self._temperatures(temperature, temperatures)
        zs = []
        for i, (shape, temp) in enumerate(zip(self.latent_shapes, temps)):
            shape = (n,) + tuple(shape)
            z = (tf.random.normal(shape) if seed is None
                 else tf.random.stateless_normal(shape, [int(seed), i]))
            zs.append(z * temp)
        return zs

    def sample(self, n, temperature=0.8, y=None, seed=None, temperatures=None):
        """n uint8 images; every level at `temperature` and the 1x1 latent at 1 (hflow), or one
        temperature per latent via `temperatures` (finest first, the 1x1 latent last)."""
        zs = self.draw_latents(n, temperature, temperatures, seed)
        return self.postprocess(self.decode(zs))

    def resample_finer(self, zs, level, temperature=0.8, temperatures=None, seed=None):
        """Level-of-detail: a copy of zs with the latents finer than `level` (indices < level;
        0 = the image, L = the 1x1 latent) redrawn and the others kept exactly."""
        zs = self._check_latents(zs)
        level = int(level)
        if not 0 <= level <= len(zs):
            raise ValueError(f"level={level} must be in 0..{len(zs)} (0 redraws nothing, "
                             f"{len(zs)} everything)")
        fresh = self.draw_latents(int(zs[0].shape[0]), temperature, temperatures, seed)
        return fresh[:level] + zs[level:]

    def vary_details(self, x_uint8, level, temperature=0.8, temperatures=None, seed=None):
        """uint8 images sharing the encoded images' latents from `level` on (coarser), with the
        finer ones resampled (the paper's figure 5)."""
        zs = self.encode(self.bin_centres(x_uint8))
        return self.postprocess(self.decode(
            self.resample_finer(zs, level, temperature, temperatures, seed)))

    # ----------------------------------------------------------------- init / family
    def init_pass(self, x_uint8, y=None, noise=None, seed=None):
        """hflow's data-dependent init pass (model.py:499-509; `initialize`): one training-mode
        pass on a batch (hflow: 64 images); each flow actnorm above 1x1 sets itself."""
        self.loss_terms(x_uint8, noise=noise, seed=seed, training=True)

    def parameter_groups(self):
        """{"flows", "decoders", "encoders": [variables]}: hflow's three learning-rate groups
        (its rule: names with conv_e -> encoders, conv_d -> decoders, the rest -> flows)."""
        groups = {g: [] for g in GROUPS}
        seen = set()
        for layer in self._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, EqConv2D):
                for v in (layer.w, layer.b):
                    groups[layer.group].append(v)
                    seen.add(id(v))
        groups["decoders"].append(self.end.conv_d_const)
        seen.add(id(self.end.conv_d_const))
        groups["flows"] += [v for v in self.trainable_variables if id(v) not in seen]
        return groups

    def hflow_parameter_count(self):
        """Parameters as hflow counts them: the trainable ones plus its frozen split masks (two
        per coupling, [C, R, R]; [C] at 1x1) and the end block's style and base masks."""
        masks = 0
        for flow in self.flows:
            masks += len(flow.steps) * 2 * flow.channels * flow.res ** 2
        masks += 2 * self.config.end_channels
        return int(sum(np.prod(v.shape) for v in self.trainable_variables)) + masks

    @property
    def prior_distribution(self):
        """tfd distribution of y_prior [1, 1, P] under the end block's unconditional flow (the
        only part of the model with an exact density; x itself only has the ELBO bound)."""
        base = tfd.Sample(tfd.Normal(0.0, 1.0), sample_shape=(1, 1, self.config.prior_channels))
        return tfd.TransformedDistribution(
            base, tfp.bijectors.Invert(self.end.prior_flow.bijector()))
