"""ContMix against a brute-force reference (explicit loops over clamped windows, PyTorch resizing and pooling),
its index tables against NATTEN's relative-position-bias construction, its fusion and its errors."""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper.layers import ContMix
from keras_hyper.layers.contmix import ResizeLike, clamped_window_starts, relative_position_indices, window_indices

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _natten_rpb_indices(height, width, k):
    """The relative-position-bias index construction of NATTEN (as OverLoCK's apply_rpb uses it): the middle
    offset repeated over the interior, queries flipped."""
    size = 2 * k - 1
    reps_h, reps_w = np.ones(k, int), np.ones(k, int)
    reps_h[k // 2], reps_w[k // 2] = height - k + 1, width - k + 1
    rows, cols = np.repeat(np.arange(k), reps_h), np.repeat(np.arange(k), reps_w)
    base = rows[:, None] * size + cols[None, :]
    taps = (np.arange(k)[:, None] * size + np.arange(k)[None, :]).reshape(-1)
    idx = (base[..., None] + taps).reshape(-1, k * k)
    return idx[::-1].reshape(-1)


@pytest.mark.parametrize("height,width,k", [(6, 6, 5), (7, 9, 3), (5, 5, 5), (13, 8, 7)])
def test_index_tables_match_natten(height, width, k):
    np.testing.assert_array_equal(relative_position_indices(height, width, k), _natten_rpb_indices(height, width, k))
    idx = window_indices(height, width, k).reshape(height, width, k, k)
    for i, j in [(0, 0), (height - 1, width - 1), (height // 2, 1)]:
        si, sj = min(max(i - k // 2, 0), height - k), min(max(j - k // 2, 0), width - k)
        expected = np.arange(si, si + k)[:, None] * width + np.arange(sj, sj + k)[None, :]
        np.testing.assert_array_equal(idx[i, j], expected)
    assert clamped_window_starts(height, k).max() == height - k


def _bn(norm, x):
    g, b, m, v = (to_numpy(w) for w in (norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance))
    return (x - m) / np.sqrt(v + norm.epsilon) * g + b


def _reference(layer, x, f):
    """ContMix written out: PyTorch bilinear resize / adaptive pooling, explicit window loops."""
    b, height, width, c = x.shape
    k, s, heads, pool = layer.kernel_size, layer.small_kernel_size, layer.num_heads, layer.pool_size
    nchw = lambda a: torch.from_numpy(np.ascontiguousarray(np.transpose(a, (0, 3, 1, 2))))  # noqa: E731
    nhwc = lambda t: np.transpose(t.numpy(), (0, 2, 3, 1))  # noqa: E731
    h, w = height, width
    if min(height, width) < k:
        h, w = (k, int(k / height * width)) if height < width else (int(k / width * height), k)
        x = nhwc(F.interpolate(nchw(x), size=(h, w), mode="bilinear", align_corners=False))
        f = nhwc(F.interpolate(nchw(f), size=(h, w), mode="bilinear", align_corners=False))
    q = _bn(layer.query_norm, f[..., :c] @ to_numpy(layer.query.kernel)) * (c // heads) ** -0.5
    ctx = nhwc(F.adaptive_avg_pool2d(nchw(f[..., c:]), pool))
    key = _bn(layer.key_norm, ctx @ to_numpy(layer.key.kernel))
    q = q.reshape(b, h, w, heads, -1)
    key = key.reshape(b, pool * pool, heads, -1)
    logits = np.einsum("bijgc,blgc->bgijl", q, key) @ to_numpy(layer.proj.kernel) + to_numpy(layer.proj.bias)
    out = np.zeros((b, h, w, c))
    for half, (size, rpb, taps) in enumerate(
        [(s, to_numpy(layer.rpb_small), slice(0, s * s)), (k, to_numpy(layer.rpb_large), slice(s * s, None))]
    ):
        v = x[..., half * c // 2 : (half + 1) * c // 2].reshape(b, h, w, heads, -1)
        for i in range(h):
            for j in range(w):
                si, sj = min(max(i - size // 2, 0), h - size), min(max(j - size // 2, 0), w - size)
                a = logits[:, :, i, j, taps].reshape(b, heads, size, size)
                a = (
                    a
                    + rpb[None, :, si - i + size - 1 : si - i + 2 * size - 1, sj - j + size - 1 : sj - j + 2 * size - 1]
                )
                a = np.exp(a - a.max(axis=(2, 3), keepdims=True))
                a = a / a.sum(axis=(2, 3), keepdims=True)
                window = v[:, si : si + size, sj : sj + size]  # (b, size, size, heads, d)
                res = np.einsum("bgxy,bxygd->bgd", a, window).reshape(b, -1)
                out[:, i, j, half * c // 2 : (half + 1) * c // 2] = res
    if (h, w) != (height, width):
        out = nhwc(F.adaptive_avg_pool2d(nchw(out), (height, width)))
    return out


def _randomised(layer, x, f, rng):
    layer([x, f])
    for weight in layer.weights:
        low = 0.5 if "moving_variance" in weight.path else -1.0
        weight.assign(rng.uniform(low, 1.5, weight.shape).astype("float32"))
    return layer


@pytest.mark.parametrize("height,width", [(9, 8), (3, 4), (6, 3)])
def test_matches_brute_force_reference(height, width):
    """(9, 8): clamped windows of both sizes; (3, 4), (6, 3): the resize path (short side below K)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, height, width, 8)).astype("float32")
    f = rng.normal(size=(2, height, width, 14)).astype("float32")
    layer = _randomised(ContMix(5, 3, num_heads=2), x, f, rng)
    np.testing.assert_allclose(to_numpy(layer([x, f])), _reference(layer, x, f), atol=2e-5, rtol=1e-4)


def test_fuse_folds_the_norms_and_keeps_outputs():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 7, 7, 8)).astype("float32")
    f = rng.normal(size=(1, 7, 7, 12)).astype("float32")
    layer = _randomised(ContMix(7, 5, num_heads=2, name="mix"), x, f, rng)
    fused = layer.fuse()
    assert fused.name == "mix" and fused.fused and len(fused.weights) == len(layer.weights) - 6
    np.testing.assert_allclose(to_numpy(fused([x, f])), to_numpy(layer([x, f])), atol=1e-5)
    with pytest.raises(ValueError, match="already fused"):
        fused.fuse()


def test_config_round_trip_and_resize_like():
    layer = ContMix(7, 3, num_heads=4, pool_size=5)
    clone = ContMix.from_config(layer.get_config())
    assert (clone.kernel_size, clone.small_kernel_size, clone.num_heads, clone.pool_size) == (7, 3, 4, 5)
    up = ResizeLike()([np.ones((1, 2, 3, 4), "float32"), np.zeros((1, 5, 6, 1), "float32")])
    np.testing.assert_allclose(to_numpy(up), np.ones((1, 5, 6, 4)), atol=1e-6)


def test_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="kernel_size must be a positive odd integer, got 4"):
        ContMix(4)
    with pytest.raises(ValueError, match="num_heads must be a positive integer"):
        ContMix(5, num_heads=0)
    with pytest.raises(ValueError, match="divisible by 2 \\* num_heads = 8, got 12"):
        ContMix(5, num_heads=4)([keras.Input((8, 8, 12)), keras.Input((8, 8, 20))])
    with pytest.raises(ValueError, match="context channels"):
        ContMix(5, num_heads=2)([keras.Input((8, 8, 8)), keras.Input((8, 8, 8))])
