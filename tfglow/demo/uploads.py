"""Untrusted upload bytes -> the model's uint8 image, and images -> PNG data URLs.

Decoding happens in memory (nothing is written to disk). Limits: `max_bytes` is enforced by the
app while it reads the body; `max_pixels` here, from the image header, before any pixel is
decoded. Only the raster formats in ALLOWED_FORMATS are opened: Pillow hands EPS / PDF-like
formats to Ghostscript, which untrusted input must not reach.

The image is then made what the model needs as `data_prep --resize crop` makes it (RGB or
grayscale by data_prep's to_array, centre square crop, Lanczos resize: crop_resize), after
applying the EXIF orientation (phone photos); images smaller than the model's are upsampled as
`evaluate.py --encode` does (tfglow.sampling.fit_image), where data_prep would refuse them.
"""
import base64
import io
import warnings

import numpy as np

#: Pillow format names an upload may have.
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM")  # JPEG covers MPO
#: fit_image warns when it upsamples; the demo reports that in the JSON instead.
ORIGIN = "demo upload"
warnings.filterwarnings("ignore", message=rf"{ORIGIN}: ", category=UserWarning)


class UploadError(ValueError):
    """A bad upload: `status` is the HTTP status (400, 413, 415), the message says why."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def decode_upload(data, image_size, channels, max_pixels):
    """Image bytes -> (uint8 [image_size, image_size, channels], note), where note says how
    the image was cropped / resized ("" when it already had the model's size).

    Raises UploadError: 400 empty or corrupt/truncated, 413 more than max_pixels pixels,
    415 not an image type of ALLOWED_FORMATS.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    from tfglow.data.imageops import crop_resize, to_array
    from tfglow.sampling import fit_image

    if not data:
        raise UploadError(400, "empty upload: send an image file (PNG, JPEG, ...) as the body")
    Image.init()  # registers every plugin, so `formats` may name any of them
    try:
        im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as e:
        raise UploadError(413, f"image too large: {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise UploadError(415, "not an image this demo reads; upload one of "
                               f"{', '.join(ALLOWED_FORMATS)}") from None
    with im:
        w, h = im.size
        if w * h > max_pixels:
            raise UploadError(413, f"image is {w}x{h} = {w * h} pixels; the limit is "
                                   f"{max_pixels} pixels")
        if w < 1 or h < 1:
            raise UploadError(400, f"image is {w}x{h}: empty")
        try:
            im.load()
            im = ImageOps.exif_transpose(im)
            array = to_array(im, ORIGIN, channels)
        except Image.DecompressionBombError as e:
            raise UploadError(413, f"image too large: {e}") from None
        except Exception as e:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError, ...
            raise UploadError(400, f"corrupt or truncated {im.format} image "
                                   f"({type(e).__name__}: {e})") from None
    h, w = array.shape[:2]
    side = min(h, w)
    if (h, w) == (image_size, image_size):
        return array, ""
    note = f"{w}x{h} image centre-cropped to {side}x{side} and resized to {image_size}x{image_size}"
    if side >= image_size:  # exactly data_prep --resize crop
        return crop_resize(array, image_size, ORIGIN), note
    # data_prep refuses to upsample; evaluate.py --encode (fit_image) does, as the demo must
    return fit_image(array, image_size, ORIGIN), note + " (upsampled: smaller than the model's images)"


def png_bytes(image):
    """uint8 [H, W, C] (C = 1 or 3) -> PNG file bytes."""
    from PIL import Image

    image = np.asarray(image, np.uint8)
    im = Image.fromarray(image[..., 0], "L") if image.shape[-1] == 1 else Image.fromarray(image, "RGB")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def png_data_url(image):
    """uint8 [H, W, C] -> "data:image/png;base64,..." for an <img> src or a download link."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def decode_data_url(url):
    """Inverse of png_data_url (tests and tools): -> uint8 [H, W, C]."""
    from PIL import Image

    head, _, b64 = url.partition(",")
    if head != "data:image/png;base64":
        raise ValueError(f"not a PNG data URL: {head[:40]!r}")
    arr = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))
    return arr if arr.ndim == 3 else arr[..., None]
