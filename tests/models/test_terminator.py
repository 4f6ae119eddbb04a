"""Terminator: its blocks against NumPy transcriptions of the paper's definitions (RGU, hyper-channel and hyper
interactions, G-IBS, slow neural loss), the slow networks' independence of the input and their regeneration for
other input sizes, per-sample inference by default vs the official batch coupling, the wiring of earlier blocks'
outputs and the builder's argument checks. (Forward, fit, round trips, LiteRT and the variants' counts are in
tests/harness.py; there is no official checkpoint or fixture.)"""

import keras
import numpy as np
import pytest
from testutil import to_numpy

from keras_hyper import applications
from keras_hyper.layers import (
    GroupedStandardization,
    HyperChannelInteraction,
    HyperInteraction,
    RecursiveGatedUnit,
    SlowNeuralLoss,
)
from keras_hyper.models import terminator

TINY = terminator.ARCH.testing.tiny


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _instance_std(x, eps=1e-5):
    return (x - x.mean(axis=(1, 2), keepdims=True)) / np.sqrt(x.var(axis=(1, 2), keepdims=True) + eps)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(3, 6, 6, 8)).astype("float32")


@pytest.fixture(scope="module")
def model():
    return terminator.terminator(**TINY, input_shape=(32, 32, 3), classifier_activation=None)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).normal(size=(3, 32, 32, 3)).astype("float32")


def test_recursive_gated_unit(x):
    layer = RecursiveGatedUnit(grid_size=6)
    layer.build(x.shape)
    layer.bias_map.assign(np.random.default_rng(2).normal(size=(6, 6)).astype("float32"))
    weights = {w.name: to_numpy(w) for w in layer.weights}

    def linear(z, part):
        return z @ weights[f"{part}_kernel"] + weights[f"{part}_bias"]

    gated = keras.ops.convert_to_numpy(
        keras.ops.gelu(_instance_std(linear(x, "k") * linear(linear(x, "v"), "q")), approximate=False)
    )
    expected = linear(gated + weights["bias_map"][None, :, :, None], "y")
    np.testing.assert_allclose(to_numpy(layer(x)), expected, atol=1e-4)


def test_hyper_channel_and_hyper_interactions(x):
    hci = HyperChannelInteraction(hidden=4, omega_0=3.0)
    out = to_numpy(hci(x))
    w = to_numpy(hci.slow_net.hyper_kernel())
    pooled = x.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out, x * _sigmoid(w * pooled * pooled), atol=1e-5)

    y = np.random.default_rng(3).normal(size=x.shape).astype("float32")
    hi = HyperInteraction(channel_hidden=4, spatial_hidden=4, grid_size=6, omega_0=3.0)
    out = to_numpy(hi([y, x]))
    w_c = to_numpy(hi.channel_slow_net.hyper_kernel())
    w_s = to_numpy(hi.spatial_slow_net.hyper_kernel())  # (6, 6, 1)
    pooled = y.mean(axis=(1, 2), keepdims=True)
    spatial = y.mean(axis=-1, keepdims=True)
    expected = x * _sigmoid((w_s * spatial * spatial) * (w_c * pooled * pooled))
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_grouped_standardization_mixes_batch_and_instance_statistics(x):
    layer = GroupedStandardization(groups=4, momentum=0.0)  # groups of 2 channels: 0-1, 4-5 batch; 2-3, 6-7 instance
    trained = to_numpy(layer(x, training=True))
    batch = (x - x.mean(axis=(0, 1, 2))) / np.sqrt(x.var(axis=(0, 1, 2)) + 1e-5)
    expected = np.where(np.isin(np.arange(8), [0, 1, 4, 5]), batch, _instance_std(x))
    np.testing.assert_allclose(trained, expected, atol=1e-4)
    assert layer.moving_mean.shape == (4,)
    # momentum 0: the moving statistics are that batch's, so inference reproduces the training output...
    np.testing.assert_allclose(to_numpy(layer(x)), trained, atol=1e-4)
    # ...and each sample is standardised on its own
    np.testing.assert_allclose(to_numpy(layer(x[:1])), trained[:1], atol=1e-4)
    official = GroupedStandardization(groups=4, inference_batch_statistics=True)
    np.testing.assert_allclose(to_numpy(official(x)), expected, atol=1e-4)  # batch statistics without training
    with pytest.raises(ValueError, match="divisible"):
        GroupedStandardization(groups=3)(x)


def test_slow_neural_loss_pulls_the_blocks_kernels_together(x):
    rng = np.random.default_rng(4)
    kernels = [rng.normal(size=(1, 6, 6, c)).astype("float32") for c in (2, 4, 8)]
    layer = SlowNeuralLoss(0.5)
    np.testing.assert_array_equal(to_numpy(layer([x, *kernels])), x)
    assert not layer.losses  # inference adds nothing
    layer([x, *kernels], training=True)
    sums = [k.sum(-1) for k in kernels]
    expected = 0.5 * sum(np.mean((sums[j] - sums[i]) ** 2) for i in range(3) for j in range(i))
    np.testing.assert_allclose(float(to_numpy(layer.losses[0])), expected, rtol=1e-5)


def test_global_hyper_kernels_depend_on_coordinates_only(model, images):
    layer = model.get_layer("blocks-1-slow_net_g")
    probe = keras.Model(model.input, layer.output)
    kernel = to_numpy(probe(images[:1]))
    np.testing.assert_array_equal(to_numpy(probe(images[1:2] * 3.0)), kernel)
    np.testing.assert_allclose(kernel[0], to_numpy(layer.hyper_kernel(32, 32)), atol=1e-6)
    assert kernel.shape == (1, 32, 32, 12)


def test_weights_serve_other_input_sizes(model, images):
    # no weight depends on the input size: the hyper-kernels and bias maps are regenerated for 48 x 40
    other = terminator.terminator(**TINY, input_shape=(48, 40, 3), classifier_activation=None)
    other.set_weights(model.get_weights())
    assert other.get_layer("blocks-0-slow_net_g").output.shape == (1, 48, 40, 3)
    assert np.all(np.isfinite(to_numpy(other(np.zeros((1, 48, 40, 3), "float32")))))


def test_inference_is_per_sample_by_default_and_batch_coupled_officially(model, images):
    logits = to_numpy(model(images))
    np.testing.assert_allclose(to_numpy(model(images[1:2])), logits[1:2], atol=1e-4)
    official = terminator.terminator(
        **TINY,
        input_shape=(32, 32, 3),
        classifier_activation=None,
        inference_batch_statistics=True,
        local_context="batch",
    )
    assert official.count_params() == model.count_params()
    official.set_weights(model.get_weights())
    coupled = to_numpy(official(images))
    assert not np.allclose(to_numpy(official(images[1:2])), coupled[1:2], atol=1e-3)
    # the slow neural loss joins the model's losses in training calls only
    official(images, training=True)
    assert len(official.losses) == 1 and float(to_numpy(official.losses[0])) > 0
    official(images)
    assert not official.losses


def test_blocks_concatenate_ten_branches_and_the_earlier_outputs(model):
    # block 1 of the tiny model (12 channels in) also takes block 0's output: 11 maps of 12 channels
    assert model.get_layer("blocks-0-concat").output.shape[-1] == 10 * 3
    assert model.get_layer("blocks-1-concat").output.shape[-1] == 11 * 12
    assert model.get_layer("blocks-1-bottleneck_layer").output.shape[-1] == 24
    # an earlier output narrower than the block's input is tiled (the official torch `repeat`)
    deeper = dict(expansions=(4, 2, 2), slow_layers=(1, 1, 1), dropout_rates=(0, 0, 0), pre_inputs=((), (), (0,)))
    deeper = terminator.terminator(**{**TINY, **deeper})
    assert deeper.get_layer("blocks-2-pre_0").output.shape[-1] == 24
    assert [t.shape[-1] for t in deeper.get_layer("blocks-2-concat").input] == [24] * 11


def test_builder_rejects_bad_configurations():
    with pytest.raises(ValueError, match="one entry per block"):
        terminator.terminator(expansions=(4, 2), slow_layers=(2,), pre_inputs=((), ()), dropout_rates=(0, 0))
    with pytest.raises(ValueError, match="earlier blocks"):
        terminator.terminator(**{**TINY, "pre_inputs": ((), (1,))})
    with pytest.raises(ValueError, match="multiple of norm_groups=12"):
        terminator.terminator(**{**TINY, "expansions": (2, 2)})
    with pytest.raises(ValueError, match="four local branches"):
        terminator.terminator(**{**TINY, "local_kernel_sizes": (3, 5)})
    with pytest.raises(ValueError, match="odd"):
        terminator.terminator(**{**TINY, "local_kernel_sizes": (3, 4, 5, 7)})
    with pytest.raises(ValueError, match="local_context"):
        terminator.terminator(**TINY, local_context="global")


def test_other_input_channels_are_declared():
    # the blocks' widths, and so the declared feature, follow the input's channels
    with pytest.raises(ValueError, match="pass in_channels=1"):
        terminator.terminator(**TINY, input_shape=(32, 32, 1))
    grey = {**TINY, "in_channels": 1, "norm_groups": 4}
    backbone = terminator.terminator(**grey, input_shape=(32, 32, 1), features_only=True)
    assert backbone.output["P0"].shape[1:] == (32, 32, 8)
    assert terminator.ARCH.feature_info({k: v for k, v in grey.items() if k != "num_classes"})[0].channels == 8


def test_variants_are_registered_at_cifar_resolution():
    for name, classes, count in (("terminator_cifar10", 10, 1_336_855), ("terminator_cifar100", 100, 1_362_865)):
        info = applications.model_info(name)
        assert (info.num_params, info.input_size, info.crop_pct) == (count, 32, 1.0)
        assert info.weight_tags == ()


def test_converter_is_strict(model):
    # the official layout's keys are named in the error; a foreign key is reported as unexpected
    with pytest.raises(ValueError, match=r"missing keys.*blocks\.0\.fast_multi_branch\.slow_net_g\.Kernel") as err:
        terminator.convert_terminator({"extra.weight": np.zeros(3, "float32")}, model)
    assert "extra.weight" in str(err.value)
