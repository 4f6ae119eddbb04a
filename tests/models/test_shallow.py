"""Residual CNN of "Make Deep Networks Shallow Again": deep and shallow forms have the same parameters, convert
into each other with the same weights, both train, and the converter is strict. (Forward, fit, round trips,
export and variant counts are in tests/harness.py.)"""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper.convert import mapping
from keras_hyper.models import shallow

Y = np.arange(16) % 2
# the class shifts the image's brightness: separable through the pooled features
X = (np.random.default_rng(0).normal(size=(16, 28, 28, 1)) + (Y - 0.5)[:, None, None, None]).astype("float32")


def _model(form, **kwargs):
    return shallow.residual_cnn(
        depth=3, filters=8, form=form, input_shape=(28, 28, 1), num_classes=2, classifier_activation=None, **kwargs
    )


def test_forms_have_the_same_parameter_count():
    counts = [_model(form).count_params() for form in ("deep", "shallow")]
    assert counts[0] == counts[1] == 8 * 9 + 8 + 3 * (8 * 8 * 9 + 8) + 8 * 2 + 2


def test_conversion_keeps_the_weights_and_changes_only_the_stack():
    deep = _model("deep")
    flat = shallow.to_shallow(deep)
    assert flat.get_layer("stack").form == "shallow"
    for a, b in zip(flat.get_weights(), deep.get_weights()):
        np.testing.assert_array_equal(a, b)
    back = shallow.to_deep(flat)
    np.testing.assert_allclose(to_numpy(back(X)), to_numpy(deep(X)), atol=1e-6)
    assert np.abs(to_numpy(flat(X)) - to_numpy(deep(X))).max() > 1e-4  # three layers: not the same function


def test_defaults_are_cifar10():
    model = shallow.residual_cnn(depth=1, filters=4)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)


def test_single_layer_forms_are_equal():
    deep = shallow.residual_cnn(depth=1, filters=8, input_shape=(28, 28, 1), num_classes=2)
    np.testing.assert_allclose(to_numpy(shallow.to_shallow(deep)(X)), to_numpy(deep(X)), atol=1e-6)


@pytest.mark.parametrize("form", ["deep", "shallow"])
def test_both_forms_fit_a_toy_problem(form):
    keras.utils.set_random_seed(0)
    model = _model(form)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(True))
    history = model.fit(X, Y, batch_size=16, epochs=8, verbose=0).history["loss"]
    assert history[-1] < 0.5 * history[0], history


def test_converter_round_trip_and_strictness():
    model = _model("deep")
    state = {}
    for layer in model.layers:
        convs = layer.convs if isinstance(layer, shallow.ResidualStack) else [layer]
        for conv in convs:
            if not conv.weights:
                continue
            key = mapping.torch_prefix(layer.name) + (f".{conv.name}" if conv is not layer else "")
            kernel, bias = conv.get_weights()
            state[f"{key}.weight"] = kernel.T if kernel.ndim == 2 else np.transpose(kernel, (3, 2, 0, 1))
            state[f"{key}.bias"] = bias
    fresh = _model("deep")
    shallow.convert_residual_cnn(state, fresh)
    np.testing.assert_allclose(to_numpy(fresh(X)), to_numpy(model(X)), atol=1e-6)
    with pytest.raises(ValueError, match="missing keys"):
        shallow.convert_residual_cnn({k: v for k, v in state.items() if k != "stack.conv_2.bias"}, fresh)


@pytest.mark.parametrize(
    "kwargs,match", [(dict(form="wide"), "form"), (dict(filters=0), "filters"), (dict(activation="nope"), "activation")]
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        shallow.residual_cnn(**{"depth": 2, **kwargs})
