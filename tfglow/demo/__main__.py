"""python -m tfglow.demo --model EXPORTED_DIR [--directions D.npz ...] [--host 127.0.0.1 --port 8000]

Loads the SavedModel once, then serves the demo page with uvicorn. Binds to localhost unless
--host says otherwise (uploads are untrusted input: expose it deliberately, if at all).
"""
import argparse
import ipaddress
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser():
    from tfglow.demo.app import DEFAULT_LIMITS

    p = argparse.ArgumentParser(prog="python -m tfglow.demo",
                                description="Interactive Glow demo over an exported model.")
    p.add_argument("--model", required=True, help="SavedModel directory (evaluate.py --export)")
    p.add_argument("--directions", nargs="*", default=[], metavar="NPZ",
                   help="Direction files: python -m tfglow.demo.directions, or evaluate.py "
                        "--manipulate's manipulate_ATTR.npz")
    p.add_argument("--host", default="127.0.0.1", help="Address to bind (default: localhost only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max_bytes", type=int, default=DEFAULT_LIMITS["max_bytes"],
                   help="Largest upload in bytes")
    p.add_argument("--max_pixels", type=int, default=DEFAULT_LIMITS["max_pixels"],
                   help="Largest upload in pixels (width x height)")
    p.add_argument("--max_images", type=int, default=DEFAULT_LIMITS["max_images"],
                   help="Encoded uploads kept in memory (oldest dropped first)")
    return p


def load(args):
    """(ExportedGlow, [Direction]) from the flags; ValueError naming the flag and file."""
    from tfglow.demo.directions import load_directions
    from tfglow.demo.model import ExportedGlow

    for flag in ("max_bytes", "max_pixels", "max_images"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if not 1 <= args.port <= 65535:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    for path in args.directions:  # before the (slow) model load
        if not os.path.isfile(path):
            raise ValueError(f"--directions {path}: no such file (write one with "
                             f"`python -m tfglow.demo.directions`)")
    try:
        model = ExportedGlow.load(args.model)
    except ValueError as e:
        raise ValueError(f"--model {e}") from None
    try:
        directions = load_directions(args.directions, model.latent_shapes)
    except ValueError as e:
        raise ValueError(f"--directions {e}") from None
    return model, directions


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        model, directions = load(args)
    except ValueError as e:
        print(f"tfglow.demo: error: {e}", file=sys.stderr)
        return 2
    import uvicorn

    from tfglow.demo.app import create_app

    app = create_app(model, directions, {"max_bytes": args.max_bytes,
                                         "max_pixels": args.max_pixels,
                                         "max_images": args.max_images})
    if not is_loopback(args.host):
        print(f"tfglow.demo: warning: binding {args.host}: anyone who reaches this address can "
              "upload images", file=sys.stderr)
    model.warm_up()
    shape = "x".join(map(str, model.image_shape))
    print(f"tfglow.demo: {args.model} ({shape}, {len(directions)} directions) on "
          f"http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
