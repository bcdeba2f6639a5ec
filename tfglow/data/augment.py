"""Training-time augmentation, mirroring the original's Keras `ImageDataGenerator` settings.

dal 1: random shifts up to 10% of height and width.
dal 2: shifts, plus horizontal flips, rotation up to 15 degrees, zoom 0.9..1.1 (x and y drawn
independently) and shear up to 0.02 degrees (Keras takes the shear range in degrees).
As in Keras: the affine map is rotation @ shift @ shear @ zoom about the image centre,
sampled bilinearly with edge ('nearest') fill; flips come after it. The original then floored
the float result to uint8; we do the same (after adding 1e-3 so that exact integers that land a
rounding error below themselves stay put).

All randomness is stateless, drawn from a per-batch seed, so a seeded pipeline is reproducible.
"""
import math

import tensorflow as tf

SHIFT_RANGE = 0.1
ROTATION_DEGREES = 15.0
ZOOM_RANGE = 0.1
SHEAR_DEGREES = 0.02


def keras_affine_matrices(theta, tx, ty, shear, zx, zy, height, width):
    """Batched 3x3 matrices mapping output (row, col, 1) to input coordinates, as Keras builds
    them (`apply_affine_transform` + `transform_matrix_offset_center`). All inputs are [B]
    float32 tensors (angles in radians); returns [B, 3, 3]."""
    one, zero = tf.ones_like(theta), tf.zeros_like(theta)

    def mat(rows):
        return tf.stack([tf.stack(r, axis=-1) for r in rows], axis=-2)

    rotation = mat([[tf.cos(theta), -tf.sin(theta), zero],
                    [tf.sin(theta), tf.cos(theta), zero], [zero, zero, one]])
    shift = mat([[one, zero, tx], [zero, one, ty], [zero, zero, one]])
    shear_m = mat([[one, -tf.sin(shear), zero], [zero, tf.cos(shear), zero], [zero, zero, one]])
    zoom = mat([[zx, zero, zero], [zero, zy, zero], [zero, zero, one]])
    m = rotation @ shift @ shear_m @ zoom
    o_r, o_c = height / 2.0 - 0.5, width / 2.0 - 0.5
    offset = tf.constant([[1, 0, o_r], [0, 1, o_c], [0, 0, 1]], tf.float32)
    reset = tf.constant([[1, 0, -o_r], [0, 1, -o_c], [0, 0, 1]], tf.float32)
    return offset @ m @ reset


def apply_affine(images, matrices):
    """images float32 [B, H, W, C]; matrices [B, 3, 3] in (row, col) order -> float32 images.

    TF's projective transform works in (x=col, y=row) order, so the matrix is transposed into
    its 8-parameter form: input_x = m11 x + m10 y + m12, input_y = m01 x + m00 y + m02.
    """
    m = matrices
    transforms = tf.stack([m[:, 1, 1], m[:, 1, 0], m[:, 1, 2],
                           m[:, 0, 1], m[:, 0, 0], m[:, 0, 2],
                           tf.zeros_like(m[:, 0, 0]), tf.zeros_like(m[:, 0, 0])], axis=1)
    shape = tf.shape(images)[1:3]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=shape, fill_value=0.0,
        interpolation="BILINEAR", fill_mode="NEAREST")


def augment_batch(images, seed, dal):
    """uint8 [B, H, W, C] -> uint8 [B, H, W, C] with dal-level augmentation; seed: int [2]."""
    if dal == 0:
        return images
    if dal not in (1, 2):
        raise ValueError(f"dal must be 0, 1 or 2, got {dal}")
    b = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]

    def draw(k, bound):
        return tf.random.stateless_uniform([b], seed=tf.stack([seed[0], seed[1] + k]),
                                           minval=-bound, maxval=bound)

    tx = draw(0, SHIFT_RANGE) * height
    ty = draw(1, SHIFT_RANGE) * width
    zeros, ones = tf.zeros([b]), tf.ones([b])
    if dal == 2:
        theta = draw(2, ROTATION_DEGREES) * (math.pi / 180.0)
        zx, zy = 1.0 + draw(3, ZOOM_RANGE), 1.0 + draw(4, ZOOM_RANGE)
        shear = draw(5, SHEAR_DEGREES) * (math.pi / 180.0)
    else:
        theta, zx, zy, shear = zeros, ones, ones, zeros
    matrices = keras_affine_matrices(theta, tx, ty, shear, zx, zy, float(height), float(width))
    out = apply_affine(tf.cast(images, tf.float32), matrices)
    if dal == 2:
        flip = draw(6, 1.0) < 0.0
        out = tf.where(flip[:, None, None, None], tf.reverse(out, axis=[2]), out)
    out = tf.cast(tf.clip_by_value(tf.floor(out + 1e-3), 0.0, 255.0), tf.uint8)
    out.set_shape(images.shape)
    return out


def effective_dal(problem, dal):
    """The augmentation level the original actually applied for `problem`: cifar10 used dal as
    given, mnist only shifts (dal > 0 -> 1), the TFRecord data sets none."""
    if problem == "cifar10":
        return dal
    if problem == "mnist":
        return min(dal, 1)
    return 0
