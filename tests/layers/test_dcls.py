"""DCLSConv2D against the PyPI `dcls` package (0.1.1, GPL: used here as a test reference only) and the
`tiny_layer` reference fixture; position sharing, fusion and argument errors."""

import json
import logging

import keras
import numpy as np
import pytest
from testutil import reference_dir, to_numpy

from keras_hyper.convert.reference import tolerance
from keras_hyper.layers import DCLSConv2D, DCLSPositions, PositionClip
from keras_hyper.models import _fusion

BACKEND = keras.backend.backend()

# (in, out, groups): dense, grouped, depthwise with multiplier 2
CONFIGS = [(3, 5, 1), (6, 4, 2), (4, 8, 4)]
SIZE = (5, 7)  # non-square, so that a swapped axis shows
COUNT = 5


def _dcls_module():
    torch = pytest.importorskip("torch")
    try:
        from DCLS.construct.modules import Dcls2d
    except ImportError:
        pytest.skip("the PyPI package dcls==0.1.1 (test reference) is not installed")
    logging.getLogger().setLevel(logging.ERROR)  # Dcls2d logs its CPU fallback on every construction
    return torch, Dcls2d


def _reference(version, cin, cout, groups, seed=0):
    """A package Dcls2d with unit-scale weights, sigmas and positions spread beyond the kernel (dropped parts)."""
    torch, Dcls2d = _dcls_module()
    torch.manual_seed(seed)
    module = Dcls2d(
        cin,
        cout,
        COUNT,
        padding=(SIZE[0] // 2, SIZE[1] // 2),
        dilated_kernel_size=SIZE,
        groups=groups,
        version=version,
        use_implicit_gemm=False,
    )
    with torch.no_grad():
        module.P.uniform_(-4.5, 4.5)
        module.weight.normal_()
        module.bias.normal_()
        if module.SIG is not None:
            module.SIG.normal_()
    return torch, module


def _converted(module, version, cin, cout, groups, height, width):
    layer = DCLSConv2D(cout, COUNT, SIZE, groups=groups, version=version)
    layer.build((None, height, width, cin))
    state = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    layer.kernel.assign(state["weight"].transpose(2, 1, 0))
    layer.positions.assign(state["P"].transpose(0, 3, 2, 1))
    layer.bias.assign(state["bias"])
    if layer.sigma is not None:
        layer.sigma.assign(state["SIG"].transpose(0, 3, 2, 1))
    return layer


@pytest.mark.parametrize("cin,cout,groups", CONFIGS, ids=["dense", "grouped", "depthwise_x2"])
@pytest.mark.parametrize("version", ["v0", "v1", "gauss", "max"])
def test_matches_the_dcls_package(version, cin, cout, groups):
    torch, module = _reference(version, cin, cout, groups)
    x = np.random.default_rng(1).normal(size=(2, cin, 9, 10)).astype("float32")
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    layer = _converted(module, version, cin, cout, groups, 9, 10)
    out = to_numpy(layer(np.transpose(x, (0, 2, 3, 1)))).transpose(0, 3, 1, 2)
    assert np.max(np.abs(out - expected)) <= tolerance(expected)


def _gradients(layer, x, weights):
    """d sum(layer(x) * weights) / d (kernel, positions, sigma) on the current backend."""
    variables = [layer.kernel, layer.positions] + ([layer.sigma] if layer.sigma is not None else [])
    if BACKEND == "jax":
        import jax

        def loss(values):
            mapping = dict(zip([v.path for v in variables], values))
            trainable = [mapping.get(v.path, v.value) for v in layer.trainable_variables]
            out, _ = layer.stateless_call(trainable, [], x)
            return (out * weights).sum()

        return [np.asarray(g) for g in jax.grad(loss)([v.value for v in variables])]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x) * weights)
        return [g.numpy() for g in tape.gradient(loss, [v.value for v in variables])]
    import torch

    loss = (layer(torch.from_numpy(x)) * torch.from_numpy(weights)).sum()
    return [g.numpy() for g in torch.autograd.grad(loss, [v.value for v in variables])]


@pytest.mark.parametrize("version", ["v0", "v1", "gauss", "max"])
def test_gradients_match_the_dcls_package(version):
    """The positions (and widths) learn exactly as in the package."""
    cin, cout, groups = 4, 8, 4
    torch, module = _reference(version, cin, cout, groups)
    x = np.random.default_rng(1).normal(size=(2, cin, 9, 10)).astype("float32")
    weights = np.random.default_rng(2).normal(size=(2, cout, 9, 10)).astype("float32")
    (module(torch.from_numpy(x)) * torch.from_numpy(weights)).sum().backward()
    expected = [module.weight.grad.numpy().transpose(2, 1, 0), module.P.grad.numpy().transpose(0, 3, 2, 1)]
    if module.SIG is not None:
        expected.append(module.SIG.grad.numpy().transpose(0, 3, 2, 1))
    layer = _converted(module, version, cin, cout, groups, 9, 10)
    ours = _gradients(layer, np.transpose(x, (0, 2, 3, 1)), np.transpose(weights, (0, 2, 3, 1)))
    for name, got, want in zip(("weight", "P", "SIG"), ours, expected):
        assert np.max(np.abs(got - want)) <= 1e-4 * max(1.0, np.max(np.abs(want))), name


def test_tiny_layer_fixture():
    """The recorded depthwise Dcls2d (8 channels, 6 elements, kernel 7, 'v0'): dense kernel and output."""
    folder = reference_dir("convnext_dcls")
    meta = json.loads((folder / "tiny_layer.json").read_text())
    data = np.load(folder / "tiny_layer.npz")
    kw = meta["kwargs"]
    _, channels, height, width = meta["input_shape"]
    layer = DCLSConv2D(
        kw["out_channels"], kw["kernel_count"], kw["dilated_kernel_size"], groups=kw["groups"], version=kw["version"]
    )
    layer.build((None, height, width, channels))
    layer.kernel.assign(data["sd/weight"].transpose(2, 1, 0))
    layer.positions.assign(data["sd/P"].transpose(0, 3, 2, 1))
    layer.bias.assign(data["sd/bias"])
    kernel = to_numpy(layer.dense_kernel()).transpose(3, 2, 0, 1)  # -> OIHW
    np.testing.assert_allclose(kernel, data["feat/kernel"], atol=1e-6)
    out = to_numpy(layer(np.transpose(data["input"], (0, 2, 3, 1)))).transpose(0, 3, 1, 2)
    assert np.max(np.abs(out - data["output"])) <= tolerance(data["output"])


def _random_layer_weights(model, seed=0):
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if "positions" in v.path:
            v.assign(rng.uniform(-2.0, 2.0, v.shape).astype("float32"))
        else:
            v.assign(rng.normal(size=v.shape).astype("float32"))


@pytest.mark.parametrize("groups,expected", [(8, "DepthwiseConv2D"), (1, "Conv2D")])
def test_generic_reparameterize_fuses_into_a_plain_convolution(groups, expected):
    inputs = keras.Input((12, 12, 8))
    y = DCLSConv2D(8, 4, 5, groups=groups, name="dcls")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="fc")(y))
    _random_layer_weights(model)
    fused = _fusion.reparameterize(model)
    layer = fused.get_layer("dcls")
    assert type(layer).__name__ == expected and not isinstance(layer, DCLSConv2D)
    x = np.random.default_rng(1).normal(size=(2, 12, 12, 8)).astype("float32")
    ref = to_numpy(model(x))
    np.testing.assert_allclose(to_numpy(fused(x)), ref, atol=1e-4 * max(1.0, np.abs(ref).max()))


def _shared_model():
    inputs = keras.Input((10, 10, 6))
    positions = DCLSPositions(6, 3, 5, name="positions")(inputs)
    x = DCLSConv2D(6, 3, 5, groups=6, name="a")([inputs, positions])
    x = DCLSConv2D(6, 3, 5, groups=6, name="b")([x, positions])
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


def test_shared_positions_are_one_trained_weight():
    model = _shared_model()
    assert [v.path for v in model.weights if "positions" in v.path] == ["positions/positions"]
    assert model.get_layer("a").positions is None and model.get_layer("b").positions is None
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    before = to_numpy(model.get_layer("positions").positions).copy()
    x = np.random.default_rng(0).normal(size=(4, 10, 10, 6)).astype("float32")
    model.fit(x, np.ones((4, 6), "float32"), batch_size=4, epochs=1, verbose=0)
    after = to_numpy(model.get_layer("positions").positions)
    assert not np.array_equal(before, after)


def test_positions_are_clipped_into_the_kernel_after_each_step():
    """What the package's clamp_parameters() does, which the official training loops call after every step."""
    layer = DCLSConv2D(4, 3, (5, 9), groups=4)
    layer.build((None, 8, 8, 4))
    assert isinstance(layer.positions.constraint, PositionClip) and layer.positions.constraint.limits == (2, 4)
    wild = np.random.default_rng(0).uniform(-6.0, 6.0, (2, 3, 1, 4)).astype("float32")
    clipped = to_numpy(layer.positions.constraint(wild))
    np.testing.assert_array_equal(clipped, np.stack([np.clip(wild[0], -2, 2), np.clip(wild[1], -4, 4)]))
    assert DCLSConv2D(4, 3, 5, groups=4, clip_positions=False).get_config()["clip_positions"] is False


def test_shared_positions_survive_a_config_round_trip():
    model = _shared_model()
    clone = keras.Model.from_config(model.get_config())
    assert len(clone.weights) == len(model.weights)
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(0).normal(size=(2, 10, 10, 6)).astype("float32")
    np.testing.assert_allclose(to_numpy(clone(x)), to_numpy(model(x)), atol=1e-6)


def test_fusing_a_sharing_layer_needs_its_positions():
    model = _shared_model()
    with pytest.raises(ValueError, match="shares its positions"):
        model.get_layer("a").fuse()
    fused = model.get_layer("a").fuse(to_numpy(model.get_layer("positions").positions))
    assert fused.name == "a" and fused.built


def test_argument_errors():
    with pytest.raises(ValueError, match="version"):
        DCLSConv2D(4, 3, 5, version="v2")
    with pytest.raises(ValueError, match="multiple of groups"):
        DCLSConv2D(6, 3, 5, groups=4)
    with pytest.raises(ValueError, match="padding"):
        DCLSConv2D(4, 3, 5, padding="causal")
    with pytest.raises(ValueError, match="dilated_kernel_size"):
        DCLSConv2D(4, 3, (5, 0))
    with pytest.raises(ValueError, match="kernel_count"):
        DCLSPositions(4, 0, 5)
    with pytest.raises(ValueError, match="divisible by groups"):
        DCLSConv2D(4, 3, 5, groups=4)(np.zeros((1, 8, 8, 6), "float32"))
    inputs = keras.Input((8, 8, 4))
    with pytest.raises(ValueError, match="Shared positions must have shape"):
        DCLSConv2D(4, 3, 5, groups=4)([inputs, DCLSPositions(4, 2, 5)(inputs)])
