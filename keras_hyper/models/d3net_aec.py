"""Complex-valued multidilated D3Net for joint acoustic echo cancellation and noise suppression (Watcharasupat,
Nguyen, Gan, Zhao, Ma, "End-to-End Complex-Valued Multidilated Convolutional Neural Network for Joint Acoustic
Echo Cancellation and Noise Suppression", ICASSP 2022, arXiv:2110.00745; paper 11 in PAPERS.md).

There is no official code: this is our reading of the paper's description (see zoo/d3net_aec.md for what is
taken from the paper and what is our choice). The model maps the microphone waveform `d` (near-end speech +
echo + noise) and the far-end reference waveform `x` to the enhanced near-end waveform, end to end:

1. STFTs `D`, `X` inside the model (`keras.ops.stft`, Hann window; the waveform is zero-padded by
   `n_fft - hop` on both sides, so that every kept sample is covered by all its overlapping frames and the
   inverse is exact on every backend), stacked as two complex channels of a (time, frequency) map;
2. a 3x3 complex input convolution, then `num_d3_blocks` pseudo-complex D3 blocks (multidilated dense
   blocks, no pooling, full resolution), each followed by a 1x1 complex transition back to `channels`;
3. the dual mask: two complex masks, the echo mask `M_e` applied to the far-end spectrum (a complex mask can
   compensate the delay and colouring of the echo path) and the noise mask `M_n` applied to the echo-cancelled
   spectrum: `S = M_n * (D - M_e * X)`;
4. the inverse STFT back to a waveform of the input's length.

Input: `(B, T, 2)`, channels last: [microphone, far-end reference] waveforms, `T = input_length` (a multiple of
`hop`). Output: the enhanced near-end waveform `(B, T)`.
"""

import keras
import numpy as np
from keras import ops

from keras_hyper.layers._args import check_positive
from keras_hyper.layers.complex import ComplexConv2D
from keras_hyper.layers.multidilated import ComplexD3Block
from keras_hyper.layers.torch_defaults import BN_EPSILON, BN_MOMENTUM, batch_norm
from keras_hyper.models import _base
from keras_hyper.ops import complex as cops


@keras.saving.register_keras_serializable(package="keras_hyper")
class STFTPair(keras.layers.Layer):
    """The STFTs of the microphone and far-end waveforms as one complex map.

    `keras.ops.stft` with a periodic Hann window of `n_fft` samples and hop `hop`, on the waveform zero-padded
    by `n_fft - hop` samples on both sides (not `center=True`: TensorFlow's `keras.ops.istft` does not undo a
    partial window overlap, so the edges would differ between backends). Computed in float32 whatever the dtype
    policy (the transform of raw audio needs the range).

    Shape: `(B, T, 2)` [microphone, far end] -> `(B, (T + n_fft) / hop - 1, n_fft / 2 + 1, 4)`: complex
    channels [microphone, far end].
    """

    def __init__(self, n_fft, hop, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.n_fft = int(n_fft)
        self.hop = int(hop)

    def _stft(self, x):
        margin = self.n_fft - self.hop
        x = ops.pad(x, ((0, 0), (margin, margin)))
        return ops.stft(x, self.n_fft, self.hop, self.n_fft, window="hann", center=False)

    def call(self, inputs):
        mic_real, mic_imag = self._stft(inputs[..., 0])
        far_real, far_imag = self._stft(inputs[..., 1])
        return ops.stack([mic_real, far_real, mic_imag, far_imag], axis=-1)

    def compute_output_shape(self, input_shape):
        length = input_shape[1]
        frames = None if length is None else (length + self.n_fft) // self.hop - 1
        return (input_shape[0], frames, self.n_fft // 2 + 1, 4)

    def get_config(self):
        return {**super().get_config(), "n_fft": self.n_fft, "hop": self.hop}


@keras.saving.register_keras_serializable(package="keras_hyper")
class DualMask(keras.layers.Layer):
    """The dual-mask combination `S = M_n * (D - M_e * X)` (complex products), in float32.

    Shape: `[spectra (B, F, K, 4) as [D, X], masks (B, F, K, 4) as [M_e, M_n]]` -> `(B, F, K, 2)`: the
    enhanced complex spectrum.
    """

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)

    def call(self, inputs):
        spectra, masks = inputs
        d_real, x_real, d_imag, x_imag = (spectra[..., i : i + 1] for i in range(4))
        e_real, n_real, e_imag, n_imag = (masks[..., i : i + 1] for i in range(4))
        echo = cops.mul(cops.merge(e_real, e_imag), cops.merge(x_real, x_imag))
        return cops.mul(cops.merge(n_real, n_imag), cops.merge(d_real, d_imag) - echo)

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], 2)


@keras.saving.register_keras_serializable(package="keras_hyper")
class InverseSTFT(keras.layers.Layer):
    """`keras.ops.istft` of a complex map `(B, F, K, 2)` back to a waveform `(B, length)`, in float32; the
    inverse of `STFTPair`'s transform (same window and hop; the `n_fft - hop` margins are cropped)."""

    def __init__(self, n_fft, hop, length, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.n_fft = int(n_fft)
        self.hop = int(hop)
        self.length = int(length)

    def call(self, inputs):
        margin = self.n_fft - self.hop
        waveform = ops.istft(
            (inputs[..., 0], inputs[..., 1]),
            self.n_fft,
            self.hop,
            self.n_fft,
            length=self.length + 2 * margin,
            window="hann",
            center=False,
        )
        return waveform[:, margin : margin + self.length]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.length)

    def get_config(self):
        return {**super().get_config(), "n_fft": self.n_fft, "hop": self.hop, "length": self.length}


def _conv_bn_relu(x, name, filters, kernel):
    x = ComplexConv2D(filters, kernel, padding="same", name=f"{name}-conv")(x)
    x = batch_norm(f"{name}-norm")(x)
    return keras.layers.ReLU(name=f"{name}-act")(x)  # CReLU: ReLU of the real and of the imaginary parts


def d3net_aec(
    input_length=16000,
    n_fft=512,
    hop=128,
    channels=32,
    num_d3_blocks=4,
    num_d2_blocks=3,
    num_layers=3,
    growth_rate=8,
    kernel_size=3,
    *,
    weights=None,
    name="d3net_aec",
):
    """Builds the complex multidilated D3Net AEC + noise suppression model.

    Args:
        input_length: T, samples of each input waveform (a multiple of `hop`; 16000 = 1 s at 16 kHz).
        n_fft: STFT window and FFT length (even); `n_fft / 2 + 1` frequency bins.
        hop: STFT hop in samples (`n_fft` divisible by it, for a perfect-reconstruction Hann overlap-add).
        channels: complex channels of the input convolution and of every transition.
        num_d3_blocks: D3 blocks, each followed by a 1x1 complex transition to `channels`.
        num_d2_blocks, num_layers, growth_rate, kernel_size: of every D3 block (`ComplexD3Block`): D2 blocks per
            D3 block, layers per D2 block (dilations 1..2**(num_layers-1)), complex channels per layer, kernel.
        weights: a local weights file (there are no published weights).
        name: model name.

    Returns:
        A functional `keras.Model`: input `(B, T, 2)` [microphone, far end], output `(B, T)`.
    """
    check_positive(
        input_length=input_length,
        n_fft=n_fft,
        hop=hop,
        channels=channels,
        num_d3_blocks=num_d3_blocks,
        num_d2_blocks=num_d2_blocks,
        num_layers=num_layers,
        growth_rate=growth_rate,
    )
    if n_fft % 2 or n_fft % hop:
        raise ValueError(f"n_fft must be even and divisible by hop, got n_fft={n_fft}, hop={hop}.")
    if input_length % hop or input_length < n_fft:
        raise ValueError(
            f"input_length must be a multiple of hop={hop} and at least n_fft={n_fft}, got {input_length}."
        )

    # one input of two channels rather than two inputs: the single-input contract of the zoo's export and tools
    inputs = keras.Input((input_length, 2), name="waveforms")
    spectra = STFTPair(n_fft, hop, name="stft")(inputs)
    x = _conv_bn_relu(spectra, "input", channels, 3)
    for index in range(num_d3_blocks):
        x = ComplexD3Block(
            num_d2_blocks,
            growth_rate,
            num_layers,
            kernel_size=kernel_size,
            epsilon=BN_EPSILON,
            momentum=BN_MOMENTUM,
            name=f"d3block_{index}",
        )(x)
        x = _conv_bn_relu(x, f"transition_{index}", channels, 1)
    # complex channels [echo, noise]; biases start at M_e = 0, M_n = 1 and the kernels at 1/100 of the default
    # scale, so that an untrained model passes the microphone signal through. With default-scale kernels the
    # random part of the masks dominated the biases: the untrained output was a random filtering of the input
    # (held-out SNR -4 to -20 dB where the microphone has +4 dB, depending on the seed) and the docs' 4-epoch
    # recipe ended anywhere from 1.8 to 5.4 dB with the draw (JAX's seed 0 drew a bad one); from the pass-through
    # it reaches 7.6-7.9 dB on every backend. Not zero: every upstream variable still gets a gradient at the
    # first step.
    masks = ComplexConv2D(
        2,
        3,
        padding="same",
        kernel_initializer=keras.initializers.VarianceScaling(0.5e-4, "fan_avg", "uniform"),
        bias_initializer=keras.initializers.Constant([0.0, 1.0, 0.0, 0.0]),
        name="masks",
    )(x)
    enhanced = DualMask(name="dual_mask")([spectra, masks])
    waveform = InverseSTFT(n_fft, hop, input_length, name="istft")(enhanced)
    return _base.finish(inputs, waveform, name=name, weights=weights, arch=ARCH)


def _no_checkpoint(state_dict, model):
    raise ValueError(
        "d3net_aec has no official implementation or checkpoint to convert from (the paper publishes neither); "
        "load keras-hyper weights with model.load_weights instead."
    )


def example_inputs(batch):
    """Valid inputs of the tiny configuration: synthetic echo + noise mixtures `(batch, T, 2)`."""
    return synthetic_mixtures(batch, TINY["input_length"], seed=0)[0]


def synthetic_mixtures(batch, length, *, seed=0, echo_gain=0.8, noise_std=0.05):
    """Synthetic AEC data: `(inputs (batch, length, 2) [microphone, far end], near_end (batch, length))`,
    float32.

    Near end: a sum of three random sinusoids with a slow amplitude envelope (voiced-speech-like); far end: an
    AR(2) process driven by white noise (a resonant, speech-like spectrum); echo: the far end convolved with a
    random exponentially decaying impulse response (delay 8..40 samples); microphone = near end + echo + white
    noise.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 16000.0
    near = np.zeros((batch, length))
    for _ in range(3):
        freq = rng.uniform(150, 2500, (batch, 1))
        near += rng.uniform(0.1, 0.3, (batch, 1)) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6.3, (batch, 1)))
    near *= 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(1, 4, (batch, 1)) * t)
    drive = rng.normal(0, 0.1, (batch, length))
    far = np.zeros((batch, length))
    radius, theta = rng.uniform(0.8, 0.95, batch), rng.uniform(0.2, 1.2, batch)
    for n in range(2, length):
        far[:, n] = drive[:, n] + 2 * radius * np.cos(theta) * far[:, n - 1] - radius**2 * far[:, n - 2]
    far /= np.abs(far).max(axis=1, keepdims=True) + 1e-8
    far *= 0.5
    echo = np.zeros_like(far)
    for b in range(batch):
        delay = rng.integers(8, 40)
        taps = rng.normal(0, 1, 64) * np.exp(-np.arange(64) / rng.uniform(4, 12))
        response = np.concatenate([np.zeros(delay), taps / np.linalg.norm(taps) * echo_gain])
        echo[b] = np.convolve(far[b], response)[:length]
    mic = near + echo + rng.normal(0, noise_std, (batch, length))
    return np.stack([mic, far], axis=-1).astype("float32"), near.astype("float32")


_PAPER = _base.Paper(
    "End-to-End Complex-Valued Multidilated Convolutional Neural Network for Joint Acoustic Echo Cancellation "
    "and Noise Suppression",
    "2110.00745",
    11,
)

TINY = dict(
    input_length=1024, n_fft=64, hop=16, channels=4, num_d3_blocks=1, num_d2_blocks=2, num_layers=2, growth_rate=2
)

# The paper's budget is "354K parameters"; its widths are not published, so these defaults are our choice that
# lands next to it (355,204; see zoo/d3net_aec.md).
VARIANTS = (_base.Variant("d3net_aec_paper", dict(), num_params=355_204, input_size=16000, crop_pct=1.0),)

ARCH = _base.Architecture(
    name="d3net_aec",
    builder=d3net_aec,
    convert=_no_checkpoint,
    paper=_PAPER,
    variants=VARIANTS,
    license="Apache-2.0",
    source="https://arxiv.org/abs/2110.00745",
    testing=_base.Testing(tiny=TINY),
    example_inputs=example_inputs,
    kind="audio",
    # keras.ops.istft lowers to tf.Complex + tf.IRFFT under TensorFlow, which LiteRT only runs as Flex ops (the
    # forward STFT converts to builtin ops)
    litert=False,
)
