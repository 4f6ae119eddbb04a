"""ViT + SoftHGNN classifier: the converter on the official state-dict layout, the SeS gate, the SeS model at a
non-square 16x24 input against the official forward, the load-balancing loss in training, pooling options, the
token-grid feature and the builder's checks. (The hypergraph module against the official fixture is in
tests/layers/test_soft_hypergraph.py; the harness checks the rest.)"""

import keras
import numpy as np
import pytest
from scipy.special import erf
from testutil import to_numpy

from keras_hyper import applications
from keras_hyper.convert.reference import tolerance
from keras_hyper.models import _base, softhgnn

SMALL = dict(
    patch_size=8, dim=16, depth=2, heads=2, dim_head=8, mlp_dim=24, dropout=0.0, emb_dropout=0.0, num_classes=10
)
X = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")


def _official_state(model):
    """The model's weights under the official `ViTWithSoftHGNN(_SeS)` names and PyTorch layouts."""
    state = {}
    for layer in model.layers:
        key = layer.name.replace("-", ".")
        weights = [to_numpy(w) for w in layer.weights]
        if isinstance(layer, (keras.layers.LayerNormalization, keras.layers.Dense)):
            state[f"{key}.weight"] = weights[0].T if isinstance(layer, keras.layers.Dense) else weights[0]
            state[f"{key}.bias"] = weights[1]
        elif layer.name == "embedding":
            state["cls_token"], state["pos_embedding"] = weights
        elif layer.name.endswith("-fn") and weights:
            qkv, out, out_b, temperature = weights
            state.update(
                {
                    f"{key}.to_qkv.weight": qkv.T,
                    f"{key}.to_out.0.weight": out.T,
                    f"{key}.to_out.0.bias": out_b,
                    f"{key}.temperature": temperature,
                }
            )
        elif layer.name == "soft_hgnn":
            base, ctx, ctx_b, pre, pre_b, edge, edge_b, node, node_b, gate = weights
            state.update(
                {
                    "soft_hgnn.edge_generator.prototype_base": base,
                    "soft_hgnn.edge_generator.context_net.weight": ctx.T,
                    "soft_hgnn.edge_generator.context_net.bias": ctx_b,
                    "soft_hgnn.edge_generator.pre_head_proj.weight": pre.T,
                    "soft_hgnn.edge_generator.pre_head_proj.bias": pre_b,
                    "soft_hgnn.edge_proj.0.weight": edge.T,
                    "soft_hgnn.edge_proj.0.bias": edge_b,
                    "soft_hgnn.node_proj.0.weight": node.T,
                    "soft_hgnn.node_proj.0.bias": node_b,
                    "soft_hgnn.gate": gate,
                }
            )
    return state


@pytest.mark.parametrize("sparse", [False, True])
def test_converter_maps_the_official_layout(sparse):
    kwargs = dict(SMALL, num_hyperedges=2, num_edge_head=2, classifier_activation=None)
    if sparse:
        kwargs.update(num_dynamic_hyperedges=4, top_k=2)
    model = softhgnn.softhgnn(**kwargs)
    model.get_layer("soft_hgnn").gate_weight.assign(0.7)
    state = _official_state(model)
    assert "to_patch_embedding.to_patch_tokens.2.weight" in state and "transformer.layers.1.1.fn.net.3.bias" in state
    clone = softhgnn.softhgnn(**kwargs)
    softhgnn.convert_softhgnn(state, clone)
    gate = to_numpy(clone.get_layer("soft_hgnn").gate_weight)
    if sparse:  # the official SeS forward never reads its gate: ours is set to 1
        assert gate == 1.0
        clone.get_layer("soft_hgnn").gate_weight.assign(0.7)
    else:  # the classifier's basic module scales its update by the gate
        assert gate == pytest.approx(0.7)
    np.testing.assert_allclose(to_numpy(clone(X)), to_numpy(model(X)), atol=1e-5)
    state.pop("cls_token")
    with pytest.raises(ValueError, match="missing keys.*cls_token"):
        softhgnn.convert_softhgnn(state, clone)


def _layer_norm(x, layer):
    gamma, beta = (to_numpy(w) for w in layer.weights)
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + layer.epsilon) * gamma + beta


def _linear(x, layer):
    kernel, bias = (to_numpy(w) for w in layer.weights)
    return x @ kernel + bias


def test_sparse_model_at_16x24_is_the_official_forward():
    """The SeS classifier at 16x24 (a non-square 4x6 patch grid, under the old 32-pixel floor), converted from an
    official-layout state dict with its `(1, 1 + 4 * 6, dim)` position table: its logits are the official
    `ViTWithSoftHGNN_SeS.forward` written out in NumPy around the pieces that tests/layers/test_soft_hypergraph.py
    checks against the official code (shifted patch tokens, locality attention, the SeS module); its `P2` feature
    is the same computation's patch tokens on their grid."""
    kwargs = dict(SMALL, patch_size=4, num_hyperedges=2, num_edge_head=2, num_dynamic_hyperedges=4, top_k=2)
    rng = np.random.default_rng(1)
    donor = softhgnn.softhgnn(**kwargs, input_shape=(16, 24, 3))
    for weight in donor.weights:  # off the initial values: LayerNorm scales, temperatures
        weight.assign(to_numpy(weight) + rng.normal(scale=0.1, size=weight.shape).astype("float32"))
    state = _official_state(donor)
    assert state["pos_embedding"].shape == (1, 1 + 4 * 6, 16)
    model = softhgnn.softhgnn(**kwargs, input_shape=(16, 24, 3), classifier_activation=None)
    softhgnn.convert_softhgnn(state, model)
    layer = model.get_layer

    x = rng.normal(size=(2, 16, 24, 3)).astype("float32")
    # SPT: 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)', LayerNorm, Linear; then the class token and the whole table
    tokens = to_numpy(layer("to_patch_embedding-shift")(x)).reshape(2, 4 * 6, -1)
    tokens = _linear(
        _layer_norm(tokens, layer("to_patch_embedding-to_patch_tokens-1")),
        layer("to_patch_embedding-to_patch_tokens-2"),
    )
    tokens = np.concatenate([np.repeat(state["cls_token"], 2, axis=0), tokens], axis=1) + state["pos_embedding"]
    for i in range(kwargs["depth"]):
        prefix = f"transformer-layers-{i}"
        tokens = tokens + to_numpy(layer(f"{prefix}-0-fn")(_layer_norm(tokens, layer(f"{prefix}-0-norm"))))
        hidden = _linear(_layer_norm(tokens, layer(f"{prefix}-1-norm")), layer(f"{prefix}-1-fn-net-0"))
        hidden = 0.5 * hidden * (1.0 + erf(hidden / np.sqrt(2.0)))  # nn.GELU(): the exact form
        tokens = tokens + _linear(hidden, layer(f"{prefix}-1-fn-net-3"))
    tokens = to_numpy(layer("soft_hgnn")(tokens))
    logits = _linear(_layer_norm(tokens[:, 0], layer("mlp_head-0")), layer("mlp_head-1"))
    out = to_numpy(model(x))
    assert np.max(np.abs(out - logits)) <= tolerance(logits)

    backbone = softhgnn.softhgnn(**kwargs, input_shape=(16, 24, 3), features_only=True)
    for target in backbone.layers:
        if target.weights:
            target.set_weights(layer(target.name).get_weights())
    grid = to_numpy(backbone(x)["P2"])
    ref = tokens[:, 1:].reshape(2, 4, 6, -1)
    assert np.max(np.abs(grid - ref)) <= tolerance(ref)


def test_sparse_model_reports_the_load_balancing_loss_in_training():
    model = softhgnn.softhgnn(**softhgnn.ARCH.testing.tiny)
    assert not model.losses
    model(X, training=True)
    assert len(model.losses) == 1 and float(to_numpy(model.losses[0])) >= 0.0


def test_attention_temperature_trains_beyond_one_patch():
    """The harness trains the tiny model at its minimum input, one patch, where the temperature gets no gradient
    (`ARCH.testing.zero_grad_at_init`); on a 2x2 grid it does."""
    model = softhgnn.softhgnn(**{**softhgnn.ARCH.testing.tiny, "num_classes": 3}, input_shape=(16, 16, 3))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    temperature = model.get_layer("transformer-layers-0-0-fn").temperature
    before = float(to_numpy(temperature))
    model.fit(X[:, :16, :16], np.arange(2), batch_size=2, epochs=1, verbose=0)
    assert float(to_numpy(temperature)) != before


def test_mean_pooling_and_other_grids():
    model = softhgnn.softhgnn(**SMALL, pool="mean", input_shape=(None, None, 3))
    assert to_numpy(model(np.zeros((1, 48, 64, 3), "float32"))).shape == (1, 10)
    assert model.get_layer("mean") is not None
    features = softhgnn.softhgnn(**SMALL, include_top=False, input_shape=(48, 64, 3))
    assert features.output_shape == (None, 6, 8, 16)
    # a patch size that is no power of two has no P level: its grid is keyed by its stride
    grid = softhgnn.softhgnn(**{**SMALL, "patch_size": 6}, input_shape=(36, 36, 3), features_only=True)
    assert list(grid.output) == ["S6"] and tuple(grid.output["S6"].shape) == (None, 6, 6, 16)


def test_builder_rejects_bad_configurations():
    with pytest.raises(ValueError, match="multiples of patch_size=8"):
        softhgnn.softhgnn(**SMALL, input_shape=(36, 36, 3))
    with pytest.raises(ValueError, match="at least 8"):  # one patch is the minimum
        softhgnn.softhgnn(**SMALL, input_shape=(4, 8, 3))
    with pytest.raises(ValueError, match="pool must be one of"):
        softhgnn.softhgnn(**{**SMALL, "pool": "max"})
    with pytest.raises(ValueError, match="top_k must be an integer in"):
        softhgnn.softhgnn(**SMALL, num_dynamic_hyperedges=4, top_k=0)
    with pytest.raises(ValueError, match="emb_dropout must be in"):
        softhgnn.softhgnn(**{**SMALL, "emb_dropout": 1.5})


def test_cifar_variants():
    info = applications.model_info("vit_softhgnn_ses")
    assert (info.num_params, info.input_size, info.weight_tags) == (35_625_457, 32, ())
    assert applications.model_info("vit_softhgnn").num_params == 18_815_473
    assert info.features == (_base.Feature("P2", 4, 512),)
