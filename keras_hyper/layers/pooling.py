"""Pooling layers that reproduce official heads which global pooling does not."""

import keras

from keras_hyper.layers._args import check_positive


@keras.saving.register_keras_serializable(package="keras_hyper")
class TopLeftAveragePooling2D(keras.layers.Layer):
    """The mean of the top-left `window x window` cells of a map, `(B, H, W, C) -> (B, C)`.

    This is what the CIFAR heads `F.avg_pool2d(x, window)` / `nn.AvgPool2d(window)` followed by a flatten compute
    wherever they run: their floor-mode pooling gives a 1x1 map (and fits the Linear layer after it) only for a
    last map of side `window` to `2 * window - 1`, whose single window is the top-left one. Global average pooling
    equals it only at side `window`. Along an axis shorter than `window` every cell is averaged, so the layer
    accepts any size (the official head refuses those).

    Args:
        window: the side of the averaged window.
    """

    def __init__(self, window, **kwargs):
        super().__init__(**kwargs)
        check_positive(window=window)
        self.window = window

    def call(self, inputs):
        return keras.ops.mean(inputs[:, : self.window, : self.window, :], axis=(1, 2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "window": self.window}
