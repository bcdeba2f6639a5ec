"""Measure, look at, edit and ship a trained model: Glow, Flow++ or the hierarchical model (any
train.py --model; flags named as train.py's where they overlap).

    python evaluate.py --restore_path RUN                  # test bits/dim, whole validation split
    python evaluate.py --restore_path RUN --importance_samples 64   # + importance-weighted bits/dim
    python evaluate.py --restore_path RUN --sample 16 --temperatures 0,0.5,0.7,1.0
    python evaluate.py --restore_path RUN --sample 16 --temperatures 0.7/0.7/0.8/1   # per latent
    python evaluate.py --restore_path RUN --lod         # hierarchical: level-of-detail grid
    python evaluate.py --restore_path RUN --fid 10000 --fid_weights inception_v3_notop.h5
    python evaluate.py --restore_path RUN --interpolate    # Figure 5: strips between real images
    python evaluate.py --restore_path RUN --manipulate Smiling [--images a.png b.png]   # Figure 6
    python evaluate.py --restore_path RUN --encode a.png b.png --out z.npz
    python evaluate.py --restore_path RUN --decode z.npz [--out DIR]
    python evaluate.py --restore_path RUN --export DIR     # SavedModel (tfglow.export)
    python evaluate.py --restore_path RUN --plots [--sample 8 --interpolate --manipulate 3]

RUN is a train.py --logdir or a checkpoint prefix; the Polyak-averaged (Flow++: EMA) weights
are used unless --no_ema. eval.json holds the one-sample bits/dim (`bits_per_dim`, the
trainer's validation figure), with --importance_samples S the importance-weighted bound
beside it (Flow++ section 4; tfglow.evaluation), and the inversion error max |x -
decode(encode(x))| over the first batch; for the hierarchical model the bound is its ELBO with
the per-level terms beside it (bits_<R>, bits_prior, bits_1; the encoder noise seeded by the
batch's images). --problem / --data_dir default to the run's. Model flags (--depth, --width,
...) are optional: if given they must match the run, and a mismatch names the differing fields.

--temperatures: comma-separated; an entry a/b/c gives one temperature per latent, finest
first, the 1x1 latent last (hierarchical model; a plain T is every level at T and the 1x1
latent at 1, as hflow). --lod writes lod.png: per validation image (--n_lod) and kept level
L, the image then --lod_variations samples that keep its latents from L on and redraw the
finer ones (the paper's figure 5). --fid N: the Frechet distance (tfglow.fid) between N
samples at --fid_temperature and the first N images of --fid_split, with features from
--fid_weights (InceptionV3 pool3 weights .h5, never downloaded, or any saved .keras model);
written to fid.json.
Outputs go to --logdir (default RUN/eval): eval.json, samples_T*.png, lod.png, fid.json, interpolate_*.png,
manipulate_ATTR.{npz,png}, decoded/, and with --plots (tfglow.plots, matplotlib) the figures
plot_curves.png (the run's train/test bits/dim), plot_temperatures.png (Figure 8; samples are
drawn if --sample is not given), plot_interpolation.png and plot_manipulate_ATTR.png (Figures 5
and 6, for --interpolate / --manipulate).

--encode: user images of any size are centre-cropped and resized to the model's size as
`data_prep --resize crop` does (with a warning), then the CENTRE of each pixel's bin,
preprocess(x) + 0.5 / n_bins, is encoded, so `--decode` gives back the images exactly.
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

#: Model flags as train.py's, compared with the run's hparams when given: name -> type.
MODEL_FLAGS = {"image_size": int, "n_levels": int, "depth": int, "width": int,
               "flow_permutation": int, "flow_coupling": int, "n_bits_x": int,
               "weight_y": float, "learntop": bool, "ycond": bool}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    a = p.add_argument
    a("--restore_path", required=True, help="train.py --logdir or checkpoint prefix")
    a("--problem", default="", help="Problem (default: the run's)")
    a("--data_dir", default="", help="Data directory (default: the run's)")
    a("--logdir", default="", help="Where outputs go (default: RUN/eval)")
    a("--no_ema", action="store_true", help="Raw weights instead of the Polyak averages")
    a("--n_batch_test", type=int, default=50, help="Minibatch size")
    a("--n_test", type=int, default=-1, help="Images to evaluate (-1: the whole split)")
    a("--split", default="validation", help="Split for bits/dim and --interpolate")
    a("--seed", type=int, default=0, help="Seed of samples and of the dequantisation noise")
    a("--importance_samples", type=int, default=0, metavar="S",
      help="Also the importance-weighted bits/dim with S dequantisation samples per image")
    a("--eval", action="store_true", help="Also run bits/dim when other actions are given")
    a("--sample", type=int, default=0, metavar="N", help="N samples per temperature (per class row for ycond)")
    a("--temperatures", default="0,0.25,0.5,0.6,0.7,0.8,0.9,1.0",
      help="Comma-separated; a/b/c = one per latent, finest first (hierarchical)")
    a("--lod", action="store_true", help="Level-of-detail grid (hierarchical model)")
    a("--n_lod", type=int, default=4, help="Validation images for --lod")
    a("--lod_variations", type=int, default=5, help="Samples per image and level for --lod")
    a("--lod_temperature", type=float, default=0.8)
    a("--fid", type=int, default=0, metavar="N", help="FID of N samples against N images")
    a("--fid_weights", default="", metavar="PATH",
      help="InceptionV3 notop weights (.h5) or a saved Keras feature model (.keras)")
    a("--fid_temperature", type=float, default=0.8, help="Temperature of the FID samples")
    a("--fid_split", default="train", help="Real images of --fid (hflow: the training set)")
    a("--interpolate", action="store_true", help="Strips between pairs of validation images")
    a("--n_interpolate", type=int, default=4, help="Pairs for --interpolate")
    a("--interpolate_steps", type=int, default=8)
    a("--manipulate", default="", metavar="ATTR", help="Attribute (CelebA attr or class)")
    a("--direction", default="", help="Reuse an attribute direction .npz")
    a("--direction_split", default="train", help="Split the direction is computed on")
    a("--n_direction", type=int, default=-1, help="Images for the direction (-1: all)")
    a("--images", nargs="+", default=None, help="Images for --manipulate (default: validation)")
    a("--n_manipulate", type=int, default=4, help="Validation images for --manipulate")
    a("--alphas", default="-1,-0.5,0,0.5,1", help="Manipulation strengths (--alphas=-1,0,1)")
    a("--encode", nargs="+", default=None, metavar="IMAGE", help="Encode images to --out")
    a("--decode", default="", metavar="Z.npz", help="Decode latents to PNGs in --out")
    a("--out", default="", help="--encode: .npz to write; --decode: folder for PNGs")
    a("--y", type=int, nargs="+", default=None, help="Labels of user images (ycond models)")
    a("--export", default="", metavar="DIR", help="Write a SavedModel")
    a("--plots", action="store_true", help="Write figures of the run and of the other actions")
    for name, kind in MODEL_FLAGS.items():
        if kind is bool:
            a(f"--{name}", action=argparse.BooleanOptionalAction, default=None)
        else:
            a(f"--{name}", type=kind, default=None, help="must match the run if given")
    return p


def floats(text, flag):
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--{flag} must be comma-separated numbers, got {text!r}") from None


def temperature_list(text, n_latents):
    """--temperatures: [T or (T_0, ..., T_end)]; per-latent entries must have n_latents values."""
    out = []
    for item in (v.strip() for v in text.split(",")):
        if not item:
            continue
        try:
            values = [float(v) for v in item.split("/")]
        except ValueError:
            raise ValueError(f"--temperatures: {item!r} is not a number or a/b/c") from None
        if len(values) > 1 and len(values) != n_latents:
            raise ValueError(f"--temperatures: {item!r} gives {len(values)} temperatures; the "
                             f"model has {n_latents} latents (finest first)")
        out.append(values[0] if len(values) == 1 else tuple(values))
    if not out:
        raise ValueError("--temperatures: no temperature given")
    return out


def config_differences(hparams, flags):
    """{field: (run's value, flag's value)} for model flags given that differ from the run."""
    diffs = {}
    for name, value in flags.items():
        if value is None:
            continue
        run = hparams.get(name)
        if run is None or (float(run) != float(value) if name == "weight_y" else run != value):
            diffs[name] = (run, value)
    return diffs


def check_flags(hparams, args, path):
    diffs = config_differences(hparams, {k: getattr(args, k) for k in MODEL_FLAGS})
    if diffs:
        detail = ", ".join(f"{k}: run {r!r} vs flag {f!r}" for k, (r, f) in sorted(diffs.items()))
        raise ValueError(f"{path} was trained with a different config; fields that differ: "
                         f"{detail} (drop these flags to use the run's values)")


def data_source(args, hparams):
    """(problem, data_dir) from flags, else the run's hparams."""
    problem = args.problem or hparams.get("problem", "")
    data_dir = args.data_dir
    if not data_dir and problem == hparams.get("problem"):
        data_dir = hparams.get("data_dir", "")
    if not data_dir and problem == "digits":
        data_dir = "digits"
    return problem, data_dir


def data_info(model, data_dir, split, rnd_crop=False):
    from tfglow.data import dataset_info

    if not data_dir:
        raise ValueError("no data: pass --data_dir (the run's hparams name none)")
    info = dataset_info(data_dir, split, model.config.image_size, rnd_crop)
    if info.channels != model.config.n_channels:
        raise ValueError(f"{data_dir}: images have {info.channels} channels, the model "
                         f"{model.config.n_channels}")
    return info


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True, default=str)
    os.replace(tmp, path)


def save_grid(path, images, rows=None):
    from tfglow.grid import image_grid, save_png

    scale = max(1, 32 // images.shape[1])
    save_png(path, image_grid(images, rows=rows, scale=scale))
    print(f"wrote {path}")


# ------------------------------------------------------------------------------ actions


def run_eval(model, args, data_dir, out):
    from tfglow.evaluation import evaluate_split

    from tfglow.data import make_dataset
    from tfglow.evaluation import inversion_error

    if args.importance_samples < 0:
        raise ValueError(f"--importance_samples={args.importance_samples} must be >= 0")
    rnd_crop = bool(args.hparams.get("rnd_crop", False))
    info = data_info(model, data_dir, args.split, rnd_crop)
    t0 = time.time()
    result = evaluate_split(model, data_dir, args.split, args.n_batch_test, seed=args.seed,
                            max_images=args.n_test, rnd_crop=rnd_crop,
                            importance_samples=args.importance_samples)
    first = next(iter(make_dataset(data_dir, args.split, model.config.image_size,
                                   args.n_batch_test, shuffle=False, repeat=False,
                                   drop_remainder=False, rnd_crop=rnd_crop, seed=args.seed)))
    result["inversion_error"] = inversion_error(model, first[0], first[1])
    result["inversion_images"] = int(first[0].shape[0])
    result.update(split=args.split, seconds=round(time.time() - t0, 3), seed=args.seed,
                  weights="raw" if args.no_ema else "polyak", data_dir=data_dir,
                  checkpoint=args.checkpoint, config=model.config.to_dict(),
                  manifest=info.manifest, data={"num_examples": info.num_examples,
                                                "channels": info.channels,
                                                "n_bits_x": info.n_bits_x})
    iw = (f", importance-weighted ({args.importance_samples} samples) "
          f"{result['importance_weighted_bits_per_dim']:.5f}" if args.importance_samples else "")
    print(f"{args.split} bits/dim {result['bits_per_dim']:.5f}{iw} over {result['n_images']} "
          f"images ({result['weights']} weights); inversion error {result['inversion_error']:.3g}")
    write_json(os.path.join(out, "eval.json"), result)
    return result


def run_sample(model, args, out):
    from tfglow.sampling import temperature_grids, temperature_label

    temps = temperature_list(args.temperatures, len(model.latent_shapes))
    grids = temperature_grids(model, args.sample, temps, seed=args.seed)
    rows = model.config.n_y if model.conditional else None
    for t, images in grids.items():
        label = temperature_label(t).replace("/", "-")
        save_grid(os.path.join(out, f"samples_T{label}.png"), images, rows)
    return grids


def run_lod(model, args, data_dir, out):
    from tfglow.data import load_numpy
    from tfglow.hierarchical.lod import detail_grid

    if not hasattr(model, "resample_finer"):
        raise ValueError(f"--lod: the {model.name} model has no level-of-detail latents "
                         "(train.py --model hierarchical)")
    if args.n_lod < 1:
        raise ValueError(f"--n_lod={args.n_lod} must be >= 1")
    images = load_numpy(data_dir, args.split, model.config.image_size)[0][:args.n_lod]
    cells = detail_grid(model, images, args.lod_variations, args.lod_temperature,
                        seed=args.seed)
    save_grid(os.path.join(out, "lod.png"), cells.reshape(-1, *cells.shape[2:]), rows=len(cells))
    return cells


def run_fid(model, args, data_dir, out):
    from tfglow.data import make_dataset
    from tfglow.fid import extractor_from_file, fid_from_features
    from tfglow.sampling import sample_images

    if args.fid < 2:
        raise ValueError(f"--fid={args.fid} must be >= 2 (a covariance needs two samples)")
    extractor = extractor_from_file(args.fid_weights)
    data_info(model, data_dir, args.fid_split)
    first = make_dataset(data_dir, args.fid_split, model.config.image_size, 256, shuffle=False,
                         repeat=False, drop_remainder=False).unbatch().take(args.fid)
    real = [images.numpy() for images, _ in first]
    if len(real) < 2:
        raise ValueError(f"--fid_split {args.fid_split}: {len(real)} images in {data_dir}")
    t0 = time.time()
    fake = sample_images(model, args.fid, args.fid_temperature, seed=args.seed,
                         y=(np.arange(args.fid) % model.config.n_y).astype(np.int32)
                         if model.conditional else None)
    real = np.stack(real)
    value = fid_from_features(extractor(real), extractor(fake))
    result = {"fid": value, "n_samples": int(args.fid), "n_real": int(len(real)),
              "temperature": args.fid_temperature, "split": args.fid_split,
              "features": os.path.abspath(args.fid_weights), "data_dir": data_dir,
              "seed": args.seed, "checkpoint": args.checkpoint,
              "weights": "raw" if args.no_ema else "polyak", "seconds": round(time.time() - t0, 3)}
    print(f"FID {value:.3f}: {args.fid} samples at T={args.fid_temperature:g} against "
          f"{len(real)} {args.fid_split} images")
    write_json(os.path.join(out, "fid.json"), result)
    return result


def run_interpolate(model, args, data_dir, out):
    from tfglow.data import load_numpy
    from tfglow.sampling import interpolation_strip

    images, labels = load_numpy(data_dir, args.split, model.config.image_size)[:2]
    rng = np.random.default_rng(args.seed)
    strips = []
    for k in range(args.n_interpolate):
        a = int(rng.integers(len(images)))
        pool = np.nonzero(labels == labels[a])[0] if model.conditional else np.arange(len(images))
        b = int(rng.choice(pool[pool != a])) if len(pool) > 1 else a
        y = int(labels[a]) if model.conditional else None
        strip = interpolation_strip(model, images[a], images[b], args.interpolate_steps, y)
        save_grid(os.path.join(out, f"interpolate_{k}.png"), strip, rows=1)
        strips.append(strip)
    return strips


def user_labels(model, args, n):
    if not model.conditional:
        return None
    y = args.y or [0]
    if len(y) not in (1, n):
        raise ValueError(f"--y: give one label or {n}, got {len(y)}")
    return np.resize(np.asarray(y, np.int32), n)


def run_manipulate(model, args, data_dir, out):
    from tfglow.data import load_numpy, make_dataset
    from tfglow.sampling import (attribute_direction, load_direction, load_images, manipulate,
                                 resolve_attribute, save_direction)

    name = args.manipulate
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    if args.direction:
        direction = load_direction(args.direction, model)
    else:
        info = data_info(model, data_dir, args.direction_split)
        kind, index = resolve_attribute(name, info)
        batches = make_dataset(data_dir, args.direction_split, model.config.image_size,
                               args.n_batch_test, shuffle=False, repeat=False,
                               drop_remainder=False, with_attr=kind == "attr")
        if args.n_direction >= 0:
            batches = batches.unbatch().take(args.n_direction).batch(args.n_batch_test)
        direction, n_with, n_without = attribute_direction(
            model, (tuple(t.numpy() for t in b) for b in batches), kind, index)
        path = os.path.join(out, f"manipulate_{safe}.npz")
        save_direction(path, direction, attribute=name, kind=kind, index=index, n_with=n_with,
                       n_without=n_without, split=args.direction_split)
        print(f"{name}: direction from {n_with} images with and {n_without} without; wrote {path}")
    if args.images:
        images = load_images(args.images, model.config.image_size, model.config.n_channels)
        y = user_labels(model, args, len(images))
    else:
        images, labels = load_numpy(data_dir, args.split, model.config.image_size)[:2]
        images, labels = images[:args.n_manipulate], labels[:args.n_manipulate]
        y = labels if model.conditional else None
    alphas = floats(args.alphas, "alphas")
    grid = manipulate(model, images, direction, alphas, y)
    save_grid(os.path.join(out, f"manipulate_{safe}.png"),
              grid.reshape(-1, *grid.shape[2:]), rows=len(images))
    return grid


def run_encode(model, args):
    from tfglow.sampling import encode_images, load_images, save_latents

    if not args.out.endswith(".npz"):
        raise ValueError(f"--encode needs --out Z.npz, got {args.out!r}")
    images = load_images(args.encode, model.config.image_size, model.config.n_channels)
    y = user_labels(model, args, len(images))
    zs = encode_images(model, images, y)
    save_latents(args.out, zs, y, files=np.array(args.encode))
    print(f"encoded {len(images)} images to {args.out} ({', '.join(f'z{i} {list(z.shape)}' for i, z in enumerate(zs))})")
    return zs


def run_decode(model, args, out):
    from tfglow.grid import save_png
    from tfglow.sampling import decode_latents, load_latents

    zs, y = load_latents(args.decode, model)
    if model.conditional and y is None:
        y = user_labels(model, args, len(zs[0]))
    images = decode_latents(model, zs, y if model.conditional else None)
    folder = args.out or os.path.join(out, "decoded")
    for i, img in enumerate(images):
        save_png(os.path.join(folder, f"{i:04d}.png"), img)
    print(f"decoded {len(images)} images to {folder}/")
    return images


def run_plots(args, results, out):
    """Figures (tfglow.plots) from the run's logs and from this call's samples and edits."""
    from tfglow import plots
    from tfglow.training.checkpoints import logdir_of

    written = []
    run_dir = logdir_of(args.checkpoint)
    if os.path.exists(os.path.join(run_dir, "train.txt")):
        written.append(plots.learning_curves([run_dir], os.path.join(out, "plot_curves.png"),
                                             title=os.path.basename(os.path.normpath(run_dir))))
    written.append(plots.temperature_sweep(results["sample"],
                                           os.path.join(out, "plot_temperatures.png")))
    if "interpolate" in results:
        strips = results["interpolate"]
        written.append(plots.image_rows(
            strips, os.path.join(out, "plot_interpolation.png"),
            col_labels=[f"{t:.2f}" for t in np.linspace(0, 1, len(strips[0]))],
            title="interpolation in latent space (Glow Figure 5)"))
    if "manipulate" in results:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in args.manipulate)
        written.append(plots.image_rows(
            list(results["manipulate"]), os.path.join(out, f"plot_manipulate_{safe}.png"),
            col_labels=[f"{a:+g}" for a in floats(args.alphas, "alphas")],
            title=f"{args.manipulate}: z + alpha * direction (Glow Figure 6)"))
    for path in written:
        print(f"wrote {path}")
    return written


def run_export(model, args, hparams):
    from tfglow.export import export_saved_model, signatures_of

    export_saved_model(model, args.export, hparams={**hparams, "exported_weights":
                                                    "raw" if args.no_ema else "polyak"})
    print(f"wrote SavedModel {args.export} (signatures {', '.join(signatures_of(model))})")


def run(args):
    """Runs the requested actions; returns {action: result}. Raises on bad input."""
    from tfglow.training.checkpoints import (load_trained, logdir_of, read_hparams,
                                             resolve_checkpoint)

    args.checkpoint = resolve_checkpoint(args.restore_path)
    hparams = read_hparams(logdir_of(args.checkpoint))
    check_flags(hparams, args, args.restore_path)
    model, hparams = load_trained(args.checkpoint, use_polyak=not args.no_ema)
    args.hparams = hparams
    problem, data_dir = data_source(args, hparams)
    out = args.logdir or os.path.join(logdir_of(args.checkpoint), "eval")
    os.makedirs(out, exist_ok=True)
    if args.out and args.encode is None and not args.decode:
        raise ValueError("--out is for --encode / --decode")
    others = (args.sample or args.interpolate or args.manipulate or args.encode or args.decode
              or args.export or args.plots or args.lod or args.fid)
    results = {}
    if args.eval or not others:
        results["eval"] = run_eval(model, args, data_dir, out)
    if args.sample or args.plots:
        if not args.sample:
            args.sample = 8
        results["sample"] = run_sample(model, args, out)
    if args.lod:
        results["lod"] = run_lod(model, args, data_dir, out)
    if args.fid:
        results["fid"] = run_fid(model, args, data_dir, out)
    if args.interpolate:
        results["interpolate"] = run_interpolate(model, args, data_dir, out)
    if args.manipulate:
        results["manipulate"] = run_manipulate(model, args, data_dir, out)
    if args.encode:
        results["encode"] = run_encode(model, args)
    if args.decode:
        results["decode"] = run_decode(model, args, out)
    if args.export:
        results["export"] = run_export(model, args, hparams)
    if args.plots:
        results["plots"] = run_plots(args, results, out)
    return results


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"evaluate.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
