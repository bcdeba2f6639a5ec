"""Using a trained model's latent space (any family, tfglow.family): samples, interpolation,
attribute manipulation, and exact encode / decode of user images (Glow section 5.2-5.3,
Figures 1, 5, 6 and 8).

Latents are the model's standardised latents, one array per level (`model.latent_shapes`;
Glow's eps per level, Flow++'s single z), as numpy float32 [B, h, w, c]. Every function takes
and returns numpy; images are uint8 [B, H, W, C].

Exact uint8 round trips encode the CENTRE of each pixel's bin (model.bin_centres),

    x = preprocess(image) + 0.5 / n_bins        (not the bin's lower edge, preprocess(image);
                                                 Flow++: pixel value + 0.5)

so postprocess(decode(encode(x))) == image: floating-point error of the flow (~1e-6) stays far
from the bin edges, where a plain preprocess would sit and float error could flip a pixel.
"""
import inspect
import warnings

import numpy as np

# ---------------------------------------------------------------------------- encode / decode


def bin_centres(model, images):
    """uint8 [B, H, W, C] -> float32 [B, H, W, C]: the centre of each pixel's bin."""
    return model.bin_centres(images)


def _labels(model, y, n):
    if not model.conditional:
        return None
    if y is None:
        raise ValueError(f"the model is class-conditional (ycond): pass labels y, ints [{n}] in "
                         f"[0, {model.config.n_y})")
    y = np.asarray(y)
    return np.full([n], int(y), np.int32) if y.ndim == 0 else y.astype(np.int32)


def encode_images(model, images, y=None, batch_size=64):
    """uint8 [N, H, W, C] -> list of L float32 latents [N, h_i, w_i, c_i] (exact, no noise)."""
    images = np.asarray(images)
    model._check_images(images, "images")
    y = _labels(model, y, len(images))
    parts = []
    for s in range(0, len(images), batch_size):
        ys = None if y is None else y[s:s + batch_size]
        parts.append([z.numpy() for z in model.encode(bin_centres(model, images[s:s + batch_size]), ys)])
    return [np.concatenate(level) for level in zip(*parts)]


def decode_latents(model, zs, y=None, batch_size=64):
    """List of L latents [N, h_i, w_i, c_i] -> uint8 images [N, H, W, C]."""
    zs = [np.asarray(z, np.float32) for z in model._check_latents(list(zs))]
    n = zs[0].shape[0]
    y = _labels(model, y, n)
    out = []
    for s in range(0, n, batch_size):
        ys = None if y is None else y[s:s + batch_size]
        out.append(model.postprocess(model.decode([z[s:s + batch_size] for z in zs], ys)).numpy())
    return np.concatenate(out)


def save_latents(path, zs, y=None, **meta):
    """Writes latents as .npz with arrays z0..z{L-1} (and y), plus scalar metadata."""
    arrays = {f"z{i}": np.asarray(z, np.float32) for i, z in enumerate(zs)}
    if y is not None:
        arrays["y"] = np.asarray(y, np.int32)
    np.savez(path, **arrays, **{k: np.asarray(v) for k, v in meta.items()})


def load_latents(path, model):
    """(list of L latents, y or None) from an .npz of `save_latents`, checked against the model."""
    shapes = model.latent_shapes
    with np.load(path) as f:
        missing = [f"z{i}" for i in range(len(shapes)) if f"z{i}" not in f]
        extra = sorted(k for k in f.files if k.startswith("z") and k[1:].isdigit()
                       and int(k[1:]) >= len(shapes))
        if missing or extra:
            raise ValueError(f"{path}: the model has {len(shapes)} levels and needs latents "
                             f"{[f'z{i}' for i in range(len(shapes))]}; missing {missing}, "
                             f"unexpected {extra}")
        zs = [f[f"z{i}"] for i in range(len(shapes))]
        y = f["y"] if "y" in f.files else None
    for i, (z, shape) in enumerate(zip(zs, shapes)):
        if z.ndim != 4 or tuple(z.shape[1:]) != tuple(shape) or len(z) != len(zs[0]):
            raise ValueError(f"{path}: z{i} has shape {list(z.shape)}; this model needs "
                             f"[N, {', '.join(map(str, shape))}] with one N for every level "
                             f"(latent shapes {[['N', *s] for s in shapes]})")
    return zs, y


# ---------------------------------------------------------------------------- user images


def fit_image(image, size, origin="image"):
    """uint8 [H, W, C] -> [size, size, C] as data_prep --resize crop does (centre square crop,
    PIL Lanczos resize), warning when it changes the image (and when it has to upsample)."""
    from PIL import Image

    from tfglow.data.imageops import centre_crop

    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    square = np.ascontiguousarray(centre_crop(image))
    side = square.shape[0]
    msg = f"{origin}: {h}x{w} image centre-cropped to {side}x{side} and resized to {size}x{size}"
    if side < size:
        msg += " (upsampled: smaller than the model's images)"
    warnings.warn(msg, stacklevel=2)
    if side == size:
        return square
    mode = "RGB" if image.shape[2] == 3 else "L"
    im = Image.fromarray(square if mode == "RGB" else square[..., 0], mode)
    out = np.asarray(im.resize((size, size), Image.LANCZOS), dtype=np.uint8)
    return out if out.ndim == 3 else out[..., None]


def load_images(paths, image_size, channels):
    """Image files -> uint8 [N, image_size, image_size, channels] (RGB or grayscale as the
    model; other sizes are centre-cropped and resized with a warning, see fit_image)."""
    from tfglow.data.imageops import load_image

    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise ValueError("no images given")
    return np.stack([fit_image(load_image(p, p, channels), image_size, p) for p in paths])


# ---------------------------------------------------------------------------- sampling


def class_rows(n_y, n_per_class):
    """Labels [n_y * n_per_class] for a grid with one row per class: 0,0,..,1,1,.."""
    return np.repeat(np.arange(n_y, dtype=np.int32), n_per_class)


def temperature_label(t):
    """0.7 -> "0.7"; (0.7, 0.7, 1.0) -> "0.7/0.7/1" (file names, figure labels)."""
    return f"{t:g}" if np.isscalar(t) else "/".join(f"{v:g}" for v in t)


def per_latent_temperatures(model):
    """True if model.sample takes one temperature per latent (`temperatures`)."""
    return "temperatures" in inspect.signature(model.sample).parameters


def sample_images(model, n, temperature, seed=0, y=None, batch_size=64):
    """n uint8 images from eps ~ N(0, T^2 I) at every level (Glow Figure 8), reproducible by
    seed: batch b uses model.sample(seed=seed + b). temperature: a number, or one per latent
    (finest first) for models whose sample takes `temperatures` (the hierarchical model)."""
    y = None if y is None else np.asarray(y, np.int32)
    kwargs = {"temperature": float(temperature)} if np.isscalar(temperature) else None
    if kwargs is None:
        if not per_latent_temperatures(model):
            raise ValueError(f"temperatures {temperature}: the {model.name} model takes one "
                             "temperature for all latents (per-latent ones are the "
                             "hierarchical model's)")
        kwargs = {"temperatures": [float(t) for t in temperature]}
    out = []
    for b, s in enumerate(range(0, n, batch_size)):
        k = min(batch_size, n - s)
        ys = None if y is None else y[s:s + k]
        out.append(model.sample(k, y=ys, seed=seed + b, **kwargs).numpy())
    return np.concatenate(out)


def temperature_grids(model, n, temperatures, seed=0):
    """{T: uint8 [N, H, W, C]} for each temperature (a number, or a tuple of one per latent:
    see sample_images), the same eps directions for every T.

    Unconditional models: N = n samples; class-conditional models: one row of n samples
    per class (N = n_y * n, labels `class_rows`).
    """
    y = class_rows(model.config.n_y, n) if model.conditional else None
    count = n if y is None else len(y)
    return {(float(t) if np.isscalar(t) else tuple(float(v) for v in t)):
            sample_images(model, count, t, seed, y) for t in temperatures}


# ---------------------------------------------------------------------------- interpolation


def interpolate(z_a, z_b, n_steps):
    """Linear interpolation at every level (Glow Figure 5): lists of L latents [h, w, c] or
    [1, h, w, c] -> list of L arrays [n_steps, h, w, c], from z_a (t=0) to z_b (t=1)."""
    if n_steps < 2:
        raise ValueError(f"interpolate: n_steps={n_steps} must be >= 2")
    t = np.linspace(0.0, 1.0, n_steps, dtype=np.float32)
    out = []
    for a, b in zip(z_a, z_b):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        a, b = a.reshape(a.shape[-3:]), b.reshape(b.shape[-3:])
        tt = t.reshape(-1, 1, 1, 1)
        out.append((1.0 - tt) * a[None] + tt * b[None])
    return out


def interpolation_strip(model, image_a, image_b, n_steps=8, y=None):
    """Two uint8 images [H, W, C] -> uint8 [n_steps, H, W, C] decoded along the line between
    their latents; the ends reproduce the images exactly. ycond models: one label y for both."""
    zs = encode_images(model, np.stack([image_a, image_b]), None if y is None else [y, y])
    path = interpolate([z[0] for z in zs], [z[1] for z in zs], n_steps)
    return decode_latents(model, path, None if y is None else [y] * n_steps)


# ---------------------------------------------------------------------------- attributes


#: CelebA's 40 attributes in file order, for the original release's records (no manifest).
CELEBA_ATTR_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes "
    "No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling "
    "Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young").split()


def known_attributes(info):
    """{name: ("attr", index) or ("label", class)} of a data set (a tfglow.data ShardSet):
    the manifest's attr_names (CelebA's 40 for manifest-less records with 40 attributes), and
    its classes by label_names and by number."""
    manifest = info.manifest or {}
    names = {}
    attr_names = manifest.get("attr_names") or (
        CELEBA_ATTR_NAMES if info.n_attr == len(CELEBA_ATTR_NAMES) else [])
    for i, a in enumerate(attr_names[:info.n_attr] if info.n_attr else attr_names):
        names[str(a)] = ("attr", i)
    n_classes = info.num_classes or 0
    label_names = manifest.get("label_names") or []
    if n_classes > 1:
        for k in range(n_classes):
            names.setdefault(str(k), ("label", k))
        for k, a in enumerate(label_names):
            names.setdefault(str(a), ("label", k))
    return names


def resolve_attribute(name, info):
    """("attr", index) or ("label", class) for `name`; a ValueError listing the known ones."""
    known = known_attributes(info)
    if name not in known:
        lower = {k.lower(): v for k, v in known.items()}
        if name.lower() in lower:
            return lower[name.lower()]
        raise ValueError(f"unknown attribute {name!r} for {info.data_dir}; known: "
                         f"{', '.join(known) if known else '(none: the data has no attributes or classes)'}")
    return known[name]


def attribute_mask(kind, index, labels, attr=None):
    """bool [B]: which images have the attribute (attr value > 0, or label == class)."""
    if kind == "attr":
        return np.asarray(attr)[:, index] > 0
    return np.asarray(labels) == index


def attribute_direction(model, batches, kind, index, batch_limit=None):
    """The paper's attribute direction (Glow section 5.3, Figure 6; the blog's recipe):

        d_i = mean(eps_i | attribute) - mean(eps_i | no attribute)      for every level i

    over (images, labels[, attr]) batches. Returns (list of L float32 [h, w, c], n_with,
    n_without); both groups must be non-empty.
    """
    sums = [[np.zeros(s, np.float64) for s in model.latent_shapes] for _ in range(2)]
    counts = [0, 0]
    for b, batch in enumerate(batches):
        if batch_limit is not None and b >= batch_limit:
            break
        images, labels = np.asarray(batch[0]), np.asarray(batch[1])
        attr = np.asarray(batch[2]) if len(batch) > 2 else None
        mask = attribute_mask(kind, index, labels, attr)
        zs = encode_images(model, images, labels if model.conditional else None)
        for group, sel in ((0, mask), (1, ~mask)):
            counts[group] += int(sel.sum())
            for acc, z in zip(sums[group], zs):
                acc += z[sel].sum(axis=0, dtype=np.float64)
    if min(counts) == 0:
        raise ValueError(f"attribute direction needs images with and without the attribute; "
                         f"found {counts[0]} with and {counts[1]} without")
    direction = [(w / counts[0] - wo / counts[1]).astype(np.float32)
                 for w, wo in zip(sums[0], sums[1])]
    return direction, counts[0], counts[1]


def manipulate(model, images, direction, alphas, y=None):
    """uint8 [N, H, W, C] -> uint8 [N, len(alphas), H, W, C]: decode(eps + alpha * d) per
    image and alpha (Glow Figure 6; alpha 0 reproduces the image exactly)."""
    images = np.asarray(images)
    zs = encode_images(model, images, y)
    n, a = len(images), len(alphas)
    alphas = np.asarray(alphas, np.float32).reshape(1, a, 1, 1, 1)
    moved = [(z[:, None] + alphas * np.asarray(d, np.float32)[None, None]).reshape(n * a, *z.shape[1:])
             for z, d in zip(zs, direction)]
    ys = None if y is None else np.repeat(np.asarray(y, np.int32), a)
    return decode_latents(model, moved, ys).reshape(n, a, *images.shape[1:])


def save_direction(path, direction, **meta):
    """Attribute direction -> .npz with z0..z{L-1} (each [h, w, c]) and metadata."""
    np.savez(path, **{f"z{i}": np.asarray(d, np.float32) for i, d in enumerate(direction)},
             **{k: np.asarray(v) for k, v in meta.items()})


def load_direction(path, model):
    """An attribute direction .npz (save_direction) checked against the model's latent shapes."""
    with np.load(path) as f:
        zs = [f[f"z{i}"] if f"z{i}" in f.files else None for i in range(len(model.latent_shapes))]
    bad = [i for i, (d, s) in enumerate(zip(zs, model.latent_shapes))
           if d is None or tuple(d.shape) != tuple(s)]
    if bad:
        raise ValueError(f"{path}: direction does not fit the model: needs z0..z{len(zs) - 1} "
                         f"of shapes {[list(s) for s in model.latent_shapes]}; wrong or missing "
                         f"{[f'z{i}' for i in bad]}")
    return zs
