"""keras_hyper.ops.deform_conv2d against torchvision.ops.deform_conv2d: values and the gradients with respect to the
input, offsets, mask, kernel and bias, on drawn configurations (kernel 1 and 3 and non-square, strides, dilations,
convolution and deformable groups, odd non-square maps, batches, offsets far outside the map, DCNv1 and v2)."""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper.ops import deform_conv2d
from keras_hyper.ops.deform import deform_output_size

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
BACKEND = keras.backend.backend()

# batch, channels, (H, W), filters, (kh, kw), strides, padding, dilation, groups, deformable groups, offset scale,
# modulated
CASES = {
    "k3-plain": (2, 4, (7, 9), 6, (3, 3), 1, 1, 1, 1, 1, 1.0, True),
    "k3-s2-d2-groups": (2, 8, (9, 6), 6, (3, 3), 2, (1, 2), (2, 1), 2, 2, 1.5, True),
    "k1-v1": (1, 6, (5, 4), 3, (1, 1), 1, 0, 1, 1, 3, 1.0, False),
    "k3x2-far-outside": (3, 4, (6, 5), 4, (3, 2), (1, 2), (2, 0), (2, 1), 1, 4, 4.0, True),
    "depthwise-tiny": (2, 4, (1, 3), 4, (3, 3), 1, 1, 1, 4, 2, 1.0, False),
}


def _draw(batch, channels, size, filters, kernel, strides, padding, dilation, groups, dg, scale, modulated):
    rng = np.random.default_rng(sum(map(ord, str(size))) + channels)
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    out_size = [deform_output_size(*a) for a in zip(size, kernel, pair(strides), pair(padding), pair(dilation))]
    taps = kernel[0] * kernel[1]
    data = {
        "input": rng.normal(size=(batch, channels, *size)),
        "offset": rng.normal(size=(batch, dg * 2 * taps, *out_size)) * scale,
        "mask": rng.uniform(size=(batch, dg * taps, *out_size)) if modulated else None,
        "weight": rng.normal(size=(filters, channels // groups, *kernel)) / np.sqrt(taps * channels // groups),
        "bias": rng.normal(size=(filters,)),
        "cotangent": rng.normal(size=(batch, filters, *out_size)),
    }
    return {k: None if v is None else v.astype("float32") for k, v in data.items()}


def _torch_reference(data, strides, padding, dilation):
    names = [k for k in ("input", "offset", "mask", "weight", "bias") if data[k] is not None]
    tensors = {k: torch.tensor(data[k], requires_grad=True) for k in names}
    out = torchvision.ops.deform_conv2d(
        tensors["input"],
        tensors["offset"],
        tensors["weight"],
        tensors["bias"],
        stride=strides,
        padding=padding,
        dilation=dilation,
        mask=tensors.get("mask"),
    )
    (out * torch.tensor(data["cotangent"])).sum().backward()
    return out.detach().numpy(), {k: t.grad.numpy() for k, t in tensors.items()}


def _nhwc(a):
    return None if a is None else np.ascontiguousarray(np.transpose(a, (0, 2, 3, 1)))


def _keras_value_and_grads(data, strides, padding, dilation, groups, dg):
    """Output and gradients of sum(output * cotangent), in the PyTorch layouts."""
    names = [k for k in ("input", "offset", "mask", "weight", "bias") if data[k] is not None]
    args = {
        "input": _nhwc(data["input"]),
        "offset": _nhwc(data["offset"]),
        "mask": _nhwc(data["mask"]),
        "weight": np.ascontiguousarray(np.transpose(data["weight"], (2, 3, 1, 0))),
        "bias": data["bias"],
    }
    cotangent = _nhwc(data["cotangent"])

    def forward(*values):
        named = dict(zip(names, values))
        return deform_conv2d(
            named["input"],
            named["offset"],
            named.get("mask"),
            named["weight"],
            named["bias"],
            strides=strides,
            padding=padding,
            dilation=dilation,
            groups=groups,
            deformable_groups=dg,
        )

    values = [args[k] for k in names]
    if BACKEND == "jax":
        import jax

        def loss(*v):
            out = forward(*v)
            return (out * cotangent).sum(), out

        # one compiled program: eager JAX would compile every primitive and its derivative separately
        (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=tuple(range(len(values))), has_aux=True))(*values)
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        variables = [tf.Variable(v) for v in values]
        with tf.GradientTape() as tape:
            out = forward(*variables)
            loss = tf.reduce_sum(out * cotangent)
        grads = tape.gradient(loss, variables)
    else:
        tensors = [torch.tensor(v, requires_grad=True) for v in values]
        out = forward(*tensors)
        (out * torch.tensor(cotangent)).sum().backward()
        grads = [t.grad for t in tensors]
    grads = {k: to_numpy(g) for k, g in zip(names, grads)}
    back = {"input": (0, 3, 1, 2), "offset": (0, 3, 1, 2), "mask": (0, 3, 1, 2), "weight": (3, 2, 0, 1)}
    grads = {k: np.transpose(g, back[k]) if k in back else g for k, g in grads.items()}
    return np.transpose(to_numpy(out), (0, 3, 1, 2)), grads


@pytest.mark.parametrize("case", list(CASES))
def test_values_and_gradients_match_torchvision(case):
    spec = CASES[case]
    data = _draw(*spec)
    strides, padding, dilation, groups, dg = spec[5], spec[6], spec[7], spec[8], spec[9]
    ref, ref_grads = _torch_reference(data, strides, padding, dilation)
    out, grads = _keras_value_and_grads(data, strides, padding, dilation, groups, dg)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-5 * max(1.0, np.abs(ref).max()))
    assert set(grads) == set(ref_grads)
    for name, expected in ref_grads.items():
        # a sampling position exactly on a pixel row or column would make the offset gradient one-sided; drawn
        # offsets are never integers, so the two implementations agree everywhere
        np.testing.assert_allclose(
            grads[name], expected, atol=2e-5 * max(1.0, np.abs(expected).max()), err_msg=f"d/d{name}"
        )
    if case == "k3x2-far-outside":
        # the case does what its name says: many taps move more than the 6x5 map's extent
        assert np.mean(np.abs(data["offset"]) > 6) > 0.1


def test_zero_offsets_and_unit_mask_are_an_ordinary_convolution():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 9, 7, 6)).astype("float32")
    kernel = rng.normal(size=(3, 3, 3, 4)).astype("float32")
    offset = np.zeros((2, 5, 4, 2 * 2 * 9), "float32")
    mask = np.ones((2, 5, 4, 2 * 9), "float32")
    out = deform_conv2d(x, offset, mask, kernel, strides=2, padding=1, groups=2, deformable_groups=2)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected = to_numpy(keras.ops.conv(padded, kernel, strides=2))
    np.testing.assert_allclose(to_numpy(out), expected, atol=1e-5 * np.abs(expected).max())


@pytest.mark.once
def test_rejects_inconsistent_arguments():
    x = np.zeros((1, 6, 6, 4), "float32")
    kernel = np.zeros((3, 3, 4, 2), "float32")
    offset = np.zeros((1, 6, 6, 18), "float32")
    with pytest.raises(ValueError, match="offset must have deformable_groups \\* 2 \\* kh \\* kw = 36"):
        deform_conv2d(x, offset, None, kernel, padding=1, deformable_groups=2)
    with pytest.raises(ValueError, match="mask must have deformable_groups \\* kh \\* kw = 9"):
        deform_conv2d(x, offset, np.zeros((1, 6, 6, 18), "float32"), kernel, padding=1)
    with pytest.raises(ValueError, match="deformable_groups must be a positive integer dividing the 4"):
        deform_conv2d(x, offset, None, kernel, padding=1, deformable_groups=3)
    with pytest.raises(ValueError, match="does not fit 4 input channels in 2 groups"):
        deform_conv2d(x, offset, None, kernel, padding=1, groups=2)
    with pytest.raises(ValueError, match="output size; axis 0 of the 6-pixel input gives 4"):
        deform_conv2d(x, offset, None, kernel)
    with pytest.raises(ValueError, match="padding must be a non-negative integer"):
        deform_conv2d(x, offset, None, kernel, padding=-1)
    with pytest.raises(ValueError, match="strides must be a positive int"):
        deform_conv2d(x, offset, None, kernel, padding=1, strides=0)
