"""GLMix layers: adaptive pooling and multi-head attention against PyTorch, the soft clustering against a NumPy
transcription of the official `GLMixBlock._forward_relation`, and argument validation. (The whole GLNet model is
checked against the official fixture by the harness and tests/models/test_glnet.py.)"""

import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper.layers import SoftClusterAttention
from keras_hyper.layers.glmix import MultiHeadSelfAttention, adaptive_avg_pool_tokens

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("size", [(7, 7), (6, 10), (3, 5)])
def test_adaptive_pooling_matches_pytorch_also_when_the_bins_do_not_divide_the_size(size):
    torch = pytest.importorskip("torch")
    x = RNG.normal(size=(2, *size, 5)).astype("float32")
    got = to_numpy(adaptive_avg_pool_tokens(x, 4))
    ref = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), 4)
    ref = ref.permute(0, 2, 3, 1).reshape(2, 16, 5).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_multi_head_attention_matches_pytorch_on_a_grid():
    torch = pytest.importorskip("torch")
    official = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    with torch.no_grad():
        for p in official.parameters():
            p.add_(0.1 * torch.randn_like(p))
    layer = MultiHeadSelfAttention(4)
    x = RNG.normal(size=(2, 3, 5, 16)).astype("float32")
    layer.build(x.shape)
    sd = {k: v.detach().numpy() for k, v in official.state_dict().items()}
    layer.set_weights([sd["in_proj_weight"].T, sd["in_proj_bias"], sd["out_proj.weight"].T, sd["out_proj.bias"]])
    tokens = torch.from_numpy(x.reshape(2, 15, 16))
    ref = official(tokens, tokens, tokens, need_weights=False)[0].detach().numpy().reshape(x.shape)
    np.testing.assert_allclose(to_numpy(layer(x)), ref, atol=1e-5)


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def test_learned_slots_follow_the_official_soft_clustering():
    layer = SoftClusterAttention(2, num_slots=3, slot_init="param")
    x = RNG.normal(size=(2, 4, 5, 8)).astype("float32")
    layer(x)
    slots0 = RNG.normal(size=(1, 3, 8)).astype("float32")
    layer.init_slots.assign(slots0)
    layer.slot_scale.assign(2.5)
    # the slot attention as the identity map (v = input, output projection = identity), so that the test sees
    # the grouping and ungrouping only
    qkv = np.zeros((8, 24), "float32")
    qkv[:, 16:] = np.eye(8)
    attention = layer.attention
    attention.qkv_kernel.assign(qkv)
    attention.out_kernel.assign(np.eye(8, dtype="float32"))
    tokens = x.reshape(2, 20, 8)
    logits = _normalize(slots0) @ np.swapaxes(2.5 * _normalize(tokens), 1, 2)  # (B, S, L)
    slots = _softmax(logits, -1) @ tokens
    # identity v and output: each slot becomes the attention-weighted mean of the slots, weights from q k^T = 0
    slots = np.repeat(slots.mean(axis=1, keepdims=True), 3, axis=1)
    ref = (_softmax(np.swapaxes(logits, 1, 2), -1) @ slots).reshape(x.shape)
    np.testing.assert_allclose(to_numpy(layer(x)), ref, atol=1e-5)


def test_pooled_slots_come_from_the_second_input():
    layer = SoftClusterAttention(2, num_slots=4)
    x = RNG.normal(size=(1, 4, 4, 8)).astype("float32")
    a = to_numpy(layer([x, x]))
    b = to_numpy(layer([x, x + RNG.normal(size=x.shape).astype("float32")]))
    assert a.shape == x.shape and not np.allclose(a, b)


def test_validation():
    with pytest.raises(ValueError, match="num_slots must be square"):
        SoftClusterAttention(2, num_slots=8)
    with pytest.raises(ValueError, match="slot_init must be one of"):
        SoftClusterAttention(2, slot_init="conv")
    with pytest.raises(ValueError, match="num_heads must be a positive integer"):
        MultiHeadSelfAttention(0)
    with pytest.raises(ValueError, match="must divide the channels"):
        MultiHeadSelfAttention(3)(np.zeros((1, 4, 8), "float32"))
