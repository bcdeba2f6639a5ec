"""The interactive web demo (Glow blog: "manipulate attributes of your face, and blend with
other faces") over an exported tfglow SavedModel (tfglow.export), nothing else.

    python evaluate.py --restore_path RUN --export exported/
    python -m tfglow.demo.directions --model exported/ --data_dir DIR|digits --out directions.npz
    python -m tfglow.demo --model exported/ --directions directions.npz    # http://127.0.0.1:8000

Modules:
    model       ExportedGlow: the SavedModel's signatures as numpy functions (loaded once)
    uploads     untrusted image bytes -> the model's uint8 image (limits, crop and resize)
    directions  attribute / class directions: computing them through `encode`, the npz format
    store       the encoded images of the session, by random id (bounded, thread-safe)
    app         the Starlette app: the page and its JSON endpoints
    __main__    the command line (uvicorn, localhost by default)
"""
import os

# Quiet TensorFlow for `python -m tfglow.demo...` (best effort: tfglow itself imports it first).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
