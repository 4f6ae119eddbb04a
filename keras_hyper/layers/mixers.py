"""Token mixers: layers that exchange information between spatial positions."""

import keras
from keras import ops

from keras_hyper import ops as hyper_ops
from keras_hyper.layers.torch_defaults import trunc_normal


@keras.saving.register_keras_serializable(package="keras_hyper")
class InceptionDepthwiseConv2D(keras.layers.Layer):
    """Inception depthwise convolution, the token mixer of InceptionNeXt (Yu et al., "InceptionNeXt: When
    Inception Meets ConvNeXt", CVPR 2024, arXiv:2303.16900).

    A large square depthwise kernel is replaced by four parallel branches over channel groups, in this order:
    identity (`C - 3g` channels), a small square depthwise kernel, a `1 x band` depthwise kernel along the
    width and a `band x 1` depthwise kernel along the height (`g = int(C * branch_ratio)` channels each).
    The identity branch is what makes the layer cheap: most channels are left untouched.

    Args:
        square_kernel_size: odd size of the square kernel.
        band_kernel_size: odd length of the two band kernels.
        branch_ratio: fraction of the channels given to each convolution branch.
        kernel_initializer, bias_initializer: initializers of the depthwise kernels and biases.

    Shape: `(B, H, W, C)` -> `(B, H, W, C)`; kernels are stored as `(kh, kw, g, 1)` like
    `keras.layers.DepthwiseConv2D`.
    """

    def __init__(
        self,
        square_kernel_size=3,
        band_kernel_size=11,
        branch_ratio=0.125,
        kernel_initializer=None,
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        for arg, size in (("square_kernel_size", square_kernel_size), ("band_kernel_size", band_kernel_size)):
            # 'same' padding is symmetric only for odd kernels, which is what the paper's padding k // 2 means.
            if not isinstance(size, int) or size < 1 or size % 2 == 0:
                raise ValueError(f"{arg} must be a positive odd integer, got {size!r}.")
        if not 0.0 < branch_ratio <= 1.0 / 3.0:
            raise ValueError(
                f"branch_ratio must be in (0, 1/3] (three branches share the channels), got {branch_ratio!r}."
            )
        self.square_kernel_size = square_kernel_size
        self.band_kernel_size = band_kernel_size
        self.branch_ratio = float(branch_ratio)
        self.kernel_initializer = keras.initializers.get(kernel_initializer or trunc_normal())
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        channels = input_shape[-1]
        groups = int(channels * self.branch_ratio)
        if groups < 1:
            raise ValueError(
                f"InceptionDepthwiseConv2D needs int(channels * branch_ratio) >= 1, got channels={channels}, "
                f"branch_ratio={self.branch_ratio}."
            )
        self.groups = groups
        self.identity_channels = channels - 3 * groups
        k, b = self.square_kernel_size, self.band_kernel_size
        self.kernels, self.biases = [], []
        for branch, shape in (("square", (k, k)), ("band_w", (1, b)), ("band_h", (b, 1))):
            self.kernels.append(
                self.add_weight(name=f"{branch}_kernel", shape=(*shape, groups, 1), initializer=self.kernel_initializer)
            )
            self.biases.append(
                self.add_weight(name=f"{branch}_bias", shape=(groups,), initializer=self.bias_initializer)
            )

    def call(self, inputs):
        g, c0 = self.groups, self.identity_channels
        branches = ops.split(inputs, [c0, c0 + g, c0 + 2 * g], axis=-1)
        out = [branches[0]]
        for x, kernel, bias in zip(branches[1:], self.kernels, self.biases):
            y = hyper_ops.depthwise_conv2d(x, ops.cast(kernel, x.dtype), padding="same")
            out.append(y + ops.cast(bias, x.dtype))
        return ops.concatenate(out, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "square_kernel_size": self.square_kernel_size,
            "band_kernel_size": self.band_kernel_size,
            "branch_ratio": self.branch_ratio,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
