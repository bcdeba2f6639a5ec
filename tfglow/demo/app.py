"""The demo's Starlette app: one page (static/index.html + app.js, no build step) and JSON
endpoints over an ExportedGlow.

    GET  /               the page
    GET  /static/...     its script and style sheet
    GET  /api/info       the model, the directions (slider names), limits
    POST /api/encode     body: the image file bytes; ?y=K for class-conditional models
                         -> id, input (cropped, PNG data URL), reconstruction, bits_per_dim, note
    POST /api/edit       {"id", "alphas": {name: alpha}, "blend": {"id", "t"} | null}
                         -> image = decode((1 - t) z_id + t z_blend + sum alpha_k d_k)
                         (class-conditional models decode with the label of `id`)
    POST /api/sample     {"temperature", "seed"?, "y"?} -> image (sample_seeded), seed

Every response is JSON; errors are {"error": "one line"} with status 400 (bad request, corrupt
image), 404 (unknown or expired id), 413 (too many bytes or pixels) or 415 (not an image type
the demo reads). Model calls run in Starlette's thread pool, so the server stays responsive and
requests run concurrently; each works on its own arrays (encoded images are immutable store
entries), so results are not mixed up. Uploads are decoded in memory; nothing is written to disk.
"""
import functools
import json
import logging
import math
import os
import secrets
import time

import numpy as np

from tfglow.demo.directions import ALPHA_RANGE
from tfglow.demo.store import Entry, LatentStore
from tfglow.demo.uploads import UploadError, decode_upload, png_data_url

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
log = logging.getLogger("tfglow.demo")

#: Limits on untrusted input (the command line's --max_bytes, --max_pixels, --max_images).
DEFAULT_LIMITS = {"max_bytes": 20 << 20, "max_pixels": 40_000_000, "max_json_bytes": 64 << 10,
                  "max_images": 256, "max_alpha": 10.0, "max_temperature": 2.0}

_CSP = ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


class ApiError(Exception):
    """An error answered as {"error": message} with HTTP `status`."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def error_response(status, message):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status)


def api(handler):
    """Wraps an endpoint: ApiError / UploadError -> their JSON error; anything unexpected ->
    a logged 500 JSON error; adds `latency_ms` (server time) to the JSON answer."""
    from starlette.responses import JSONResponse

    @functools.wraps(handler)
    async def endpoint(request):
        t0 = time.perf_counter()
        try:
            result = await handler(request)
        except (ApiError, UploadError) as e:
            return error_response(e.status, str(e))
        except Exception:  # noqa: BLE001 - the page gets JSON, the log the traceback
            log.exception("%s %s failed", request.method, request.url.path)
            return error_response(500, "internal error (see the server log)")
        result["latency_ms"] = round(1000 * (time.perf_counter() - t0), 1)
        return JSONResponse(result)

    return endpoint


# ----------------------------------------------------------------------------- request input


async def read_body(request, limit, what="upload"):
    """The request body, at most `limit` bytes (413 past it, without reading the rest)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"{what} is {int(declared)} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"{what} is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request, limit):
    body = await read_body(request, limit, "request body")
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body must be a JSON object") from None
    if not isinstance(obj, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return obj


def number(value, name, lo, hi):
    """A finite float in [lo, hi] from JSON (400 naming `name` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ApiError(400, f"{name} must be a number, got {json.dumps(value)[:40]}")
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be in [{lo:g}, {hi:g}], got {value:g}")
    return float(value)


def integer(value, name, lo, hi):
    """An int in [lo, hi] from JSON or a query string (400 naming `name` otherwise)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"{name} must be an integer, got {json.dumps(value)[:40]}")
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be in [{lo}, {hi}], got {value}")
    return value


# ----------------------------------------------------------------------------- the app


def create_app(model, directions=(), limits=None):
    """The Starlette app over `model` (an ExportedGlow, loaded once by the caller) and
    `directions` ([tfglow.demo.directions.Direction]). `limits` overrides DEFAULT_LIMITS."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.responses import FileResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    limits = {**DEFAULT_LIMITS, **(limits or {})}
    unknown = set(limits) - set(DEFAULT_LIMITS)
    if unknown:
        raise ValueError(f"create_app: unknown limits {sorted(unknown)}; known {sorted(DEFAULT_LIMITS)}")
    store = LatentStore(limits["max_images"])
    by_name = {d.name: d for d in directions}
    if len(by_name) != len(directions):
        raise ValueError("create_app: direction names must be unique")

    def label(value):
        """The class label of a request (0 and ignored for unconditional models)."""
        if not model.ycond or value is None or value == "":
            return 0
        return integer(value, "y", 0, model.n_y - 1)

    def entry(key, name="id"):
        if not isinstance(key, str) or not key:
            raise ApiError(400, f"{name} must be the id /api/encode returned")
        found = store.get(key)
        if found is None:
            raise ApiError(404, f"{name}: unknown or expired image id; upload the image again")
        return found

    async def index(request):
        return FileResponse(os.path.join(STATIC, "index.html"), media_type="text/html")

    @api
    async def info(request):
        return {"model": model.summary(),
                "directions": [{"name": d.name, "kind": d.kind, "index": d.index}
                               for d in directions],
                "alpha_range": ALPHA_RANGE,
                "limits": {k: limits[k] for k in ("max_bytes", "max_pixels", "max_temperature")}}

    @api
    async def encode(request):
        y = label(request.query_params.get("y"))
        data = await read_body(request, limits["max_bytes"])

        def work():
            image, note = decode_upload(data, model.image_size, model.channels,
                                        limits["max_pixels"])
            zs = model.encode(image[None], y)
            recon = model.decode(zs, y)[0]
            bpd = float(model.bits_per_dim(image[None], y)[0])
            key = store.put(Entry(image, tuple(z[0] for z in zs), y))
            return {"id": key, "input": png_data_url(image), "reconstruction": png_data_url(recon),
                    "exact": bool(np.array_equal(recon, image)), "bits_per_dim": bpd,
                    "note": note, "y": y}

        return await run_in_threadpool(work)

    @api
    async def edit(request):
        obj = await read_json(request, limits["max_json_bytes"])
        base = entry(obj.get("id"))
        alphas = {} if obj.get("alphas") is None else obj["alphas"]
        if not isinstance(alphas, dict):
            raise ApiError(400, "alphas must be an object {direction name: alpha}")
        moves = []
        for name, alpha in alphas.items():
            if name not in by_name:
                raise ApiError(400, f"unknown direction {name!r}; known: {', '.join(by_name) or '(none)'}")
            a = number(alpha, f"alphas[{name!r}]", -limits["max_alpha"], limits["max_alpha"])
            if a != 0.0:
                moves.append((a, by_name[name]))
        blend, t = None, 0.0
        if obj.get("blend") is not None:
            spec = obj["blend"]
            if not isinstance(spec, dict):
                raise ApiError(400, 'blend must be {"id": ..., "t": 0..1} or null')
            blend = entry(spec.get("id"), "blend.id")
            t = number(spec.get("t", 0.5), "blend.t", 0.0, 1.0)

        def work():
            zs = []
            for level, z in enumerate(base.latents):
                if blend is not None and t != 0.0:  # sampling.interpolate's line, at t
                    z = (1.0 - t) * z + t * blend.latents[level]
                for a, d in moves:
                    z = z + np.float32(a) * d.latents[level]
                zs.append(np.asarray(z, np.float32)[None])
            image = model.decode(zs, base.y)[0]
            return {"image": png_data_url(image)}

        return await run_in_threadpool(work)

    @api
    async def sample(request):
        obj = await read_json(request, limits["max_json_bytes"])
        temperature = number(obj.get("temperature", 0.7), "temperature", 0.0,
                             limits["max_temperature"])
        seed = obj.get("seed")
        seed = secrets.randbelow(2 ** 31 - 1) if seed is None else integer(seed, "seed", 0, 2 ** 31 - 1)
        y = label(obj.get("y"))

        def work():
            image = model.sample(1, temperature, seed, y)[0]
            return {"image": png_data_url(image), "seed": seed, "temperature": temperature, "y": y}

        return await run_in_threadpool(work)

    async def http_error(request, exc):
        return error_response(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

    routes = [Route("/", index),
              Route("/api/info", info),
              Route("/api/encode", encode, methods=["POST"]),
              Route("/api/edit", edit, methods=["POST"]),
              Route("/api/sample", sample, methods=["POST"]),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error},
                    middleware=[Middleware(SecurityHeaders)])
    app.state.model, app.state.store, app.state.limits = model, store, limits
    return app


class SecurityHeaders:
    """ASGI middleware: a strict Content-Security-Policy (the page loads only its own script,
    style and data: images) and nosniff on every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", _CSP.encode()),
                            (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
