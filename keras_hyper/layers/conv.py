"""Convolution layers that route through `keras_hyper.ops` fast paths."""

import keras

from keras_hyper import ops as hyper_ops


@keras.saving.register_keras_serializable(package="keras_hyper")
class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` (same arguments, weights and config) that runs stride-1, channels-last,
    multiplier-1 convolutions through `keras_hyper.ops.depthwise_conv2d`: on JAX that is a fused shifted sum
    for small kernels and an FFT convolution for large ones, instead of XLA's slow CPU grouped convolution.
    Every other configuration falls back to the Keras implementation.

    Shape: `(B, H, W, C)` -> `(B, H', W', C * depth_multiplier)`.
    """

    def _fast(self):
        dilation = tuple(self.dilation_rate)
        return (
            tuple(self.strides) == (1, 1)
            and self.depth_multiplier == 1
            and self.data_format == "channels_last"
            and dilation[0] == dilation[1]
            and (self.padding == "valid" or all(k % 2 == 1 for k in self.kernel_size))
        )

    def call(self, inputs):
        if not self._fast():
            return super().call(inputs)
        outputs = hyper_ops.depthwise_conv2d(
            inputs, self.kernel, padding=self.padding, dilation=int(self.dilation_rate[0])
        )
        if self.use_bias:
            outputs = outputs + self.bias
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs


@keras.saving.register_keras_serializable(package="keras_hyper")
class Conv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` (same arguments, weights and config) whose channels-last convolution runs through
    `keras_hyper.ops.conv2d`: on PyTorch without the two activation copies Keras' wrapper makes around every
    convolution (HaloNet26t's inference spent 38% of its time in those copies). Other backends and
    channels-first data are unchanged.

    Shape: `(B, H, W, C)` -> `(B, H', W', filters)`.
    """

    def convolution_op(self, inputs, kernel):
        if self.data_format != "channels_last":
            return super().convolution_op(inputs, kernel)
        return hyper_ops.conv2d(
            inputs,
            kernel,
            strides=tuple(self.strides),
            padding=self.padding,
            dilation=tuple(self.dilation_rate),
        )
