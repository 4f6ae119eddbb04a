"""Pseudo-complex multidilated dense blocks: the D2 and D3 blocks of D3Net (Takahashi, Mitsufuji, "Densely
connected multidilated convolutional networks for dense prediction tasks", CVPR 2021, arXiv:2011.11844) on
complex feature maps, as in Watcharasupat et al., "End-to-End Complex-Valued Multidilated Convolutional Neural
Network for Joint Acoustic Echo Cancellation and Noise Suppression" (ICASSP 2022, arXiv:2110.00745; paper 11 in
PAPERS.md).

Complex tensors follow the project's layout: real tensors `(..., 2*C)` with the real parts in the first half of
the last axis and the imaginary parts in the second. "Pseudo-complex": the convolutions are true complex
products (`keras_hyper.ops.complex.conv`), while the normalisation and the activation act on the real and the
imaginary parts as independent real channels (BatchNormalization over the 2*C axis, ReLU on both parts, i.e.
CReLU).
"""

import keras
from keras import ops

from keras_hyper.layers._args import check_at_least
from keras_hyper.layers.torch_defaults import BN_EPSILON, BN_MOMENTUM, batch_norm
from keras_hyper.ops import complex as cops


def _complex_channels(name, input_shape):
    channels = input_shape[-1]
    if len(input_shape) != 4 or channels is None or channels % 2:
        raise ValueError(
            f"{name} expects a complex feature map (B, H, W, 2*C) with a known, even last axis, got {input_shape}."
        )
    return channels // 2


@keras.saving.register_keras_serializable(package="keras_hyper")
class ComplexD2Block(keras.layers.Layer):
    """Pseudo-complex D2 block: a densely connected stack of multidilated complex convolutions.

    Layer `l` (0-based) sees the block input `f_0` and the outputs `f_1..f_l` of the layers before it and
    convolves each with its own complex kernel, `f_j` with dilation `2**j` (the multidilated convolution of D3Net:
    near features with small, far ones with large receptive fields, without pooling):
    `f_{l+1} = CReLU(BN(sum_j conv_{2**j}(f_j) + b))`, `growth_rate` complex channels. The block returns the
    complex concatenation of `f_1..f_L` (`num_layers * growth_rate` complex channels); spatial size is kept
    ("same" padding).

    Args:
        growth_rate: complex channels added by each layer.
        num_layers: L, layers of the block (dilations up to `2**(L-1)`).
        kernel_size: odd kernel size of every convolution.
        epsilon, momentum: of the BatchNormalizations.

    Sublayer weights: `kernels_real_{l}_{j}`, `kernels_imag_{l}_{j}` `(k, k, C_j, growth_rate)`, `bias_{l}`
    `(2 * growth_rate,)`; `norms[l]` (BatchNormalization over `2 * growth_rate` real channels).

    Shape: `(B, H, W, 2*C)` -> `(B, H, W, 2 * num_layers * growth_rate)`.
    """

    def __init__(self, growth_rate, num_layers, kernel_size=3, epsilon=BN_EPSILON, momentum=BN_MOMENTUM, **kwargs):
        super().__init__(**kwargs)
        check_at_least(1, **{"ComplexD2Block growth_rate": growth_rate, "ComplexD2Block num_layers": num_layers})
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"ComplexD2Block kernel_size must be an odd positive integer, got {kernel_size!r}.")
        self.growth_rate = growth_rate
        self.num_layers = num_layers
        self.kernel_size = kernel_size
        self.epsilon = float(epsilon)
        self.momentum = float(momentum)

    def build(self, input_shape):
        channels = _complex_channels("ComplexD2Block", input_shape)
        k, g = self.kernel_size, self.growth_rate
        init = keras.initializers.HeNormal()
        self.kernels = []
        self.biases = []
        self.norms = []
        for layer in range(self.num_layers):
            row = []
            for source in range(layer + 1):
                shape = (k, k, channels if source == 0 else g, g)
                row.append(
                    (
                        self.add_weight(name=f"kernel_real_{layer}_{source}", shape=shape, initializer=init),
                        self.add_weight(name=f"kernel_imag_{layer}_{source}", shape=shape, initializer=init),
                    )
                )
            self.kernels.append(row)
            self.biases.append(self.add_weight(name=f"bias_{layer}", shape=(2 * g,), initializer="zeros"))
            norm = batch_norm(f"norm_{layer}", epsilon=self.epsilon, momentum=self.momentum, dtype=self.dtype_policy)
            norm.build((None, None, None, 2 * g))
            self.norms.append(norm)

    def call(self, inputs, training=None):
        features = [inputs]
        dtype = inputs.dtype
        for layer in range(self.num_layers):
            total = None
            for source, (real, imag) in enumerate(self.kernels[layer]):
                y = cops.conv(
                    features[source],
                    ops.cast(real, dtype),
                    ops.cast(imag, dtype),
                    padding="same",
                    dilation_rate=2**source,
                )
                total = y if total is None else total + y
            total = total + ops.cast(self.biases[layer], dtype)
            features.append(ops.relu(self.norms[layer](total, training=training)))
        return cops.concatenate(features[1:])

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 2 * self.num_layers * self.growth_rate)

    def get_config(self):
        return {
            **super().get_config(),
            "growth_rate": self.growth_rate,
            "num_layers": self.num_layers,
            "kernel_size": self.kernel_size,
            "epsilon": self.epsilon,
            "momentum": self.momentum,
        }


@keras.saving.register_keras_serializable(package="keras_hyper")
class ComplexD3Block(keras.layers.Layer):
    """Pseudo-complex D3 block: D2 blocks connected densely (D3Net's nested dense connectivity).

    D2 block `m` takes the complex concatenation of the block input and the outputs of D2 blocks `0..m-1`;
    the D3 block returns the complex concatenation of all D2 outputs.

    Args:
        num_blocks: D2 blocks.
        growth_rate, num_layers, kernel_size, epsilon, momentum: of every D2 block (`ComplexD2Block`).

    Sublayers: `blocks[m]` (`ComplexD2Block`, named `d2_{m}`).

    Shape: `(B, H, W, 2*C)` -> `(B, H, W, 2 * num_blocks * num_layers * growth_rate)`.
    """

    def __init__(
        self, num_blocks, growth_rate, num_layers, kernel_size=3, epsilon=BN_EPSILON, momentum=BN_MOMENTUM, **kwargs
    ):
        super().__init__(**kwargs)
        check_at_least(1, **{"ComplexD3Block num_blocks": num_blocks})
        self.num_blocks = num_blocks
        self.block_config = dict(
            growth_rate=growth_rate, num_layers=num_layers, kernel_size=kernel_size, epsilon=epsilon, momentum=momentum
        )
        # validates the D2 arguments now, not at build time
        ComplexD2Block(**self.block_config)

    def build(self, input_shape):
        channels = _complex_channels("ComplexD3Block", input_shape)
        width = self.block_config["growth_rate"] * self.block_config["num_layers"]
        self.blocks = []
        for m in range(self.num_blocks):
            block = ComplexD2Block(**self.block_config, dtype=self.dtype_policy, name=f"d2_{m}")
            block.build((*input_shape[:-1], 2 * (channels + m * width)))
            self.blocks.append(block)

    def call(self, inputs, training=None):
        outputs = []
        for block in self.blocks:
            outputs.append(block(cops.concatenate([inputs, *outputs]), training=training))
        return cops.concatenate(outputs)

    def compute_output_shape(self, input_shape):
        width = self.block_config["growth_rate"] * self.block_config["num_layers"]
        return (*input_shape[:-1], 2 * self.num_blocks * width)

    def get_config(self):
        return {**super().get_config(), "num_blocks": self.num_blocks, **self.block_config}
