"""SimplifiedLinearAttention (global, and in shifted windows), SoftmaxAttention and PositionEmbedding against
numpy, table resizing for other grids, and argument checks. (The layers inside the converted official model are
checked in tests/models/test_slab.py.)"""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper.layers import PositionEmbedding, SimplifiedLinearAttention, SoftmaxAttention


def _heads(t, heads):
    b, h, w, c = t.shape
    return t.reshape(b, h * w, heads, c // heads).transpose(0, 2, 1, 3)


def _dwc(v, kernel, bias):
    """'same' depthwise correlation of (B, H, W, d) with a (k, k, d, 1) kernel."""
    k = kernel.shape[0]
    pad = np.pad(v, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    out = np.zeros_like(v)
    for i in range(k):
        for j in range(k):
            out += pad[:, i : i + v.shape[1], j : j + v.shape[2]] * kernel[i, j, :, 0]
    return out + bias


def _sla(qkv, pe, kernel, bias, heads):
    """SLA in NumPy, in the official *other* evaluation order, `(q k^T) v`, with the same normaliser."""
    b, h, w, c3 = qkv.shape
    dim = c3 // 3
    q, k, v = qkv[..., :dim], qkv[..., dim : 2 * dim] + pe, qkv[..., 2 * dim :]
    qh, kh, vh = _heads(np.maximum(q, 0), heads), _heads(np.maximum(k, 0), heads), _heads(v, heads)
    z = 1.0 / (np.einsum("bhic,bhc->bhi", qh, kh.sum(axis=2)) + 1e-6)
    out = np.einsum("bhij,bhjd->bhid", qh @ kh.transpose(0, 1, 3, 2), vh) * z[..., None]
    out = out.transpose(0, 2, 1, 3).reshape(b, h, w, dim)
    d = dim // heads
    local = np.concatenate([_dwc(v[..., i * d : (i + 1) * d], kernel, bias) for i in range(heads)], axis=-1)
    return out + local


def _filled(layer, shape, rng, grid):
    layer.build(shape)
    pe = rng.normal(size=(1, *grid, shape[-1] // 3)).astype("float32")
    layer.positional_encoding.assign(pe)
    kernel, bias = (rng.normal(size=w.shape).astype("float32") for w in layer.dwc.weights)
    layer.dwc.set_weights([kernel, bias])
    return pe, kernel, bias


def test_linear_attention_matches_the_quadratic_form_in_numpy():
    heads, dim = 2, 8
    rng = np.random.default_rng(0)
    qkv = rng.normal(size=(2, 4, 5, 3 * dim)).astype("float32")
    layer = SimplifiedLinearAttention(heads, grid_size=(4, 5), kernel_size=3)
    pe, kernel, bias = _filled(layer, qkv.shape, rng, (4, 5))
    np.testing.assert_allclose(to_numpy(layer(qkv)), _sla(qkv, pe, kernel, bias, heads), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shift", [0, 2])
def test_windowed_linear_attention_is_a_hand_partition_in_numpy(shift):
    """SLAB-Swin's windowed SLA: roll by -shift, cut 4x4 windows, SLA inside each (its own normaliser, the
    window's positional encoding, the depthwise conv zero-padded at the window's border), paste, roll back; no
    mask on the wrapped-around tokens (the official code passes none to SLA)."""
    heads, dim, win = 2, 8, 4
    rng = np.random.default_rng(4)
    qkv = rng.normal(size=(2, 8, 12, 3 * dim)).astype("float32")
    layer = SimplifiedLinearAttention(heads, grid_size=(win, win), kernel_size=3, window_size=win, shift_size=shift)
    pe, kernel, bias = _filled(layer, qkv.shape, rng, (win, win))
    rolled = np.roll(qkv, (-shift, -shift), axis=(1, 2))
    out = np.zeros((*qkv.shape[:3], dim), "float32")
    for r in range(0, 8, win):
        for c in range(0, 12, win):
            out[:, r : r + win, c : c + win] = _sla(rolled[:, r : r + win, c : c + win], pe, kernel, bias, heads)
    expected = np.roll(out, (shift, shift), axis=(1, 2))
    np.testing.assert_allclose(to_numpy(layer(qkv)), expected, rtol=1e-4, atol=1e-4)
    # a table stored for another window is resized to it, as the global layer's is to its map
    other = SimplifiedLinearAttention(heads, grid_size=(2, 2), kernel_size=3, window_size=win, shift_size=shift)
    other.build(qkv.shape)
    assert to_numpy(other(qkv)).shape == (2, 8, 12, dim)


def test_windowed_linear_attention_needs_whole_windows():
    layer = SimplifiedLinearAttention(1, grid_size=(4, 4), kernel_size=3, window_size=4)
    with pytest.raises(ValueError, match="whole number of 4x4 windows"):
        layer(np.zeros((1, 4, 6, 6), "float32"))


def test_softmax_attention_matches_numpy():
    heads, dim = 2, 8
    qkv = np.random.default_rng(1).normal(size=(1, 3, 3, 3 * dim)).astype("float32")
    q, k, v = (_heads(qkv[..., i * dim : (i + 1) * dim], heads) for i in range(3))
    logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dim // heads)
    attn = np.exp(logits - logits.max(-1, keepdims=True))
    attn /= attn.sum(-1, keepdims=True)
    expected = (attn @ v).transpose(0, 2, 1, 3).reshape(1, 3, 3, dim)
    np.testing.assert_allclose(to_numpy(SoftmaxAttention(heads)(qkv)), expected, rtol=1e-5, atol=1e-5)


def test_tables_are_resized_to_other_grids():
    layer = PositionEmbedding((4, 4))
    layer.build((None, 4, 4, 3))
    table = np.random.default_rng(2).normal(size=(1, 4, 4, 3)).astype("float32")
    layer.pos_embed.assign(table)
    zeros = np.zeros((1, 4, 4, 3), "float32")
    np.testing.assert_allclose(to_numpy(layer(zeros)), table, atol=0)
    big = to_numpy(layer(np.zeros((1, 8, 6, 3), "float32")))
    expected = to_numpy(keras.ops.image.resize(table, (8, 6), interpolation="bilinear", antialias=False))
    np.testing.assert_allclose(big, expected, atol=1e-6)
    # a constant table stays constant under resizing
    sla = SimplifiedLinearAttention(1, grid_size=(2, 2), kernel_size=1)
    sla.build((None, 2, 2, 6))
    assert to_numpy(sla(np.zeros((1, 6, 6, 6), "float32"))).shape == (1, 6, 6, 2)


def test_mixed_precision_runs_the_product_in_float32():
    layer = SimplifiedLinearAttention(2, grid_size=(3, 3), dtype="mixed_float16")
    qkv = (100.0 * np.random.default_rng(3).normal(size=(1, 3, 3, 24))).astype("float32")
    out = to_numpy(layer(qkv))
    assert out.dtype == np.float16 and np.all(np.isfinite(out))


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: SimplifiedLinearAttention(0), "num_heads"),
        (lambda: SimplifiedLinearAttention(2, grid_size=(3,)), "grid_size"),
        (lambda: SimplifiedLinearAttention(2, kernel_size=4), "kernel_size"),
        (lambda: SimplifiedLinearAttention(2, window_size=0), "window_size"),
        (lambda: SimplifiedLinearAttention(2, window_size=4, shift_size=4), "shift_size"),
        (lambda: SimplifiedLinearAttention(2, shift_size=1), "shift_size"),
        (lambda: SoftmaxAttention(-1), "num_heads"),
        (lambda: PositionEmbedding((0, 3)), "grid_size"),
    ],
)
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_qkv_width_is_checked():
    with pytest.raises(ValueError, match="qkv"):
        SimplifiedLinearAttention(2).build((None, 4, 4, 8))
    with pytest.raises(ValueError, match="divide"):
        SoftmaxAttention(3).build((None, 4, 4, 24))
