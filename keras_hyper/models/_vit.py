"""The pre-norm transformer block of the plain ViTs here (Hyena-ViT, PfLayer-ViT/PiT), in DeiT's layout and with
timm's layer names (`blocks-{i}-norm1`, `-mlp-fc1`, ...), so that one converter mapping serves their checkpoints.

`grid_feature(patch_size, dim)` declares such a ViT's one feature, its token grid.

`block(x, prefix, mixer, ...)`: `x + DropPath(mixer(LN(x)))`, then `x + DropPath(MLP(LN(x)))` with a GELU MLP of
`mlp_ratio * C` hidden units; (B, H, W, C) or (B, N, C) in and out. The token mixer is any callable (a layer).
"""

import keras

from keras_hyper.layers import DropPath
from keras_hyper.layers.torch_defaults import trunc_normal
from keras_hyper.models import _base

LN_EPSILON = 1e-6


def grid_feature(patch_size, dim):
    """The `Feature`s of a plain ViT: its one token grid, of stride `patch_size` (`"P4"` for 16, `"S14"` for a
    14-pixel patch, which has no P level)."""
    return _base.pyramid([dim], [patch_size])


def dense_init():
    return trunc_normal()


def layer_norm(name):
    return keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=name)


def block(x, prefix, mixer, *, mlp_ratio, drop_path):
    dim = x.shape[-1]
    y = mixer(layer_norm(f"{prefix}-norm1")(x))
    if drop_path > 0.0:
        y = DropPath(drop_path, name=f"{prefix}-drop_path1")(y)
    x = keras.layers.Add(name=f"{prefix}-add1")([x, y])
    y = layer_norm(f"{prefix}-norm2")(x)
    y = keras.layers.Dense(int(dim * mlp_ratio), kernel_initializer=dense_init(), name=f"{prefix}-mlp-fc1")(y)
    y = keras.layers.Activation("gelu", name=f"{prefix}-mlp-act")(y)
    y = keras.layers.Dense(dim, kernel_initializer=dense_init(), name=f"{prefix}-mlp-fc2")(y)
    if drop_path > 0.0:
        y = DropPath(drop_path, name=f"{prefix}-drop_path2")(y)
    return keras.layers.Add(name=f"{prefix}-add2")([x, y])
