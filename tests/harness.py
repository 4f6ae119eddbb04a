"""What every registered architecture passes, on its tiny configuration, on the current backend.

A new architecture gets every check here by being registered; nothing is copied per model. Non-image
architectures (`Architecture.example_inputs`) get the input-agnostic checks; the image-classifier ones
(head, pooling, input-shape validation, dynamic size) run on image architectures only.
Run once per backend (KERAS_BACKEND=jax|tensorflow|torch); LiteRT export runs in the TensorFlow run only.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from testutil import build_tiny, count_params, named_outputs, outputs, reference_dir, tiny_inputs, to_numpy

from keras_hyper import applications
from keras_hyper.applications import registry
from keras_hyper.convert import reference
from keras_hyper.models._base import APP_ARGS
from keras_hyper.weights import files as weights_lib

# KERAS_HYPER_TEST_ARCHS=a,b restricts the harness to those architectures while one is being developed.
ONLY = [name for name in os.environ.get("KERAS_HYPER_TEST_ARCHS", "").split(",") if name]
ARCHS = [a for a in registry.architectures() if not ONLY or a.name in ONLY]
ARCH_IDS = [a.name for a in ARCHS]
IMAGE_ARCHS = [a for a in ARCHS if a.example_inputs is None]
BACKBONE_ARCHS = [a for a in IMAGE_ARCHS if a.is_image]
VARIANTS = [(a, v) for a in ARCHS for v in a.variants]
BACKEND = keras.backend.backend()
# Backend-independent checks (argument validation, the head and pooling wiring, config and file serialization,
# parameter counts) run in the torch run only (tests/conftest.py); the checks of the computation itself (forward,
# fit, features, dynamic shapes, mixed precision, weights across backends, reference parity) run in all three.
once = pytest.mark.once


_SHARED = {}


def shared_tiny(arch):
    """`build_tiny(arch)`, built once per process and shared by the checks that do not change the model (forward,
    config and file round trips, weights across backends, features, LiteRT): under JAX each build and each new
    model's first forward is an XLA compile, the bulk of the run. Checks that train or edit weights build their own."""
    if arch.name not in _SHARED:
        _SHARED[arch.name] = build_tiny(arch)
    return _SHARED[arch.name]


@pytest.fixture(params=ARCHS, ids=ARCH_IDS)
def arch(request):
    return request.param


@pytest.fixture(params=IMAGE_ARCHS, ids=[a.name for a in IMAGE_ARCHS])
def image_arch(request):
    return request.param


def test_forward_is_finite_with_the_configured_head(arch):
    model = shared_tiny(arch)
    outs = outputs(model, tiny_inputs(arch))
    assert all(np.all(np.isfinite(out)) for out in outs)
    if arch.example_inputs is None:
        (out,) = outs
        assert out.shape == (2, arch.testing.tiny.get("num_classes", 1000))
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)  # softmax by default


def test_one_fit_step_changes_every_trainable_variable(arch):
    x = tiny_inputs(arch, batch=4)
    if arch.example_inputs is None:
        model = build_tiny(arch, classifier_activation=None)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        y = np.arange(4) % model.output_shape[-1]
    else:  # no labels to speak of: pulling every output towards zero reaches every variable
        model, loss = build_tiny(arch), "mse"
        y = keras.tree.map_structure(np.zeros_like, keras.tree.map_structure(to_numpy, model(x)))
    # TensorFlow takes the step eagerly: tracing a train step into a graph cost 8-50 s per tiny model (10-16x the
    # eager step) and adds nothing to what this checks; the forward pass is traced by the LiteRT export check, and
    # compiled `fit` under TensorFlow by the models' training tests and the docs examples.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, run_eagerly=BACKEND == "tensorflow")
    before = [to_numpy(v).copy() for v in model.trainable_variables]
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    unchanged = [v.path for v, b in zip(model.trainable_variables, before) if np.array_equal(to_numpy(v), b)]
    stale = set(arch.testing.zero_grad_at_init) - {v.path for v in model.trainable_variables}
    assert not stale, f"zero_grad_at_init names variables the tiny model does not have: {sorted(stale)}"
    unexpected = [path for path in unchanged if path not in arch.testing.zero_grad_at_init]
    assert not unexpected, f"variables not updated by a fit step: {unexpected}"


@once
def test_config_round_trip(arch):
    model = shared_tiny(arch)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    x = tiny_inputs(arch)
    for got, expected in zip(outputs(clone, x), outputs(model, x)):
        np.testing.assert_allclose(got, expected, atol=1e-6)


@once
def test_keras_file_round_trip(arch, tmp_path):
    model = shared_tiny(arch)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = tiny_inputs(arch)
    for got, expected in zip(outputs(loaded, x), outputs(model, x)):
        np.testing.assert_array_equal(got, expected)


NEXT_BACKEND = {"jax": "tensorflow", "tensorflow": "torch", "torch": "jax"}


def test_weights_saved_here_load_in_the_next_backend(tmp_path):
    """Each backend's run checks the next one (jax -> tensorflow -> torch -> jax), all architectures at once."""
    cases = []
    for arch in ARCHS:
        model = shared_tiny(arch)
        x = tiny_inputs(arch)
        np.savez(tmp_path / f"{arch.name}.x.npz", *keras.tree.flatten(x))
        np.savez(tmp_path / f"{arch.name}.y.npz", *outputs(model, x))
        model.save_weights(tmp_path / f"{arch.name}.weights.h5")
        cases.append(arch.name)
    env = {**os.environ, "KERAS_BACKEND": NEXT_BACKEND[BACKEND]}
    script = Path(__file__).with_name("_cross_backend.py")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), json.dumps(cases)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@once
@pytest.mark.parametrize("pooling", [None, "avg", "max"])
def test_without_top(image_arch, pooling):
    model = build_tiny(image_arch, include_top=False, pooling=pooling)
    (out,) = outputs(model, tiny_inputs(image_arch))
    if pooling is None:
        assert out.ndim == 4 and out.shape[0] == 2
    else:
        assert out.ndim == 2 and out.shape[0] == 2


@pytest.mark.parametrize("arch", BACKBONE_ARCHS, ids=[a.name for a in BACKBONE_ARCHS])
def test_features_match_declaration_and_classifier(arch):
    """The backbone's stage features: keys, strides and channels as `model_info(...).features` declares them, and
    values equal to the classifier's own intermediate tensors (same weights, moved by layer name)."""
    classifier = shared_tiny(arch)
    backbone = build_tiny(arch, features_only=True)
    weights_lib.transfer(classifier, backbone)
    declared = arch.feature_info({k: v for k, v in arch.testing.tiny.items() if k not in APP_ARGS})
    x = tiny_inputs(arch)
    got = named_outputs(backbone, x)
    assert list(got) == [f.key for f in declared]
    producers = [t._keras_history.operation.name for t in backbone.outputs]
    # a class-token ViT's head reads the class token, off its token grid: the classifier never computes the grid,
    # the headless model (include_top=False, the same weights) does
    source = classifier
    if not {layer.name for layer in classifier.layers}.issuperset(producers):
        source = build_tiny(arch, include_top=False)
        weights_lib.transfer(classifier, source)
    expected = outputs(keras.Model(source.input, [source.get_layer(n).output for n in producers]), x)
    size = x.shape[1]
    for feature, value, intermediate in zip(declared, got.values(), expected):
        assert value.shape[-1] == feature.channels, feature
        # a valid-padded overlapping stem (PiT: kernel 16, stride 8) has one token fewer than size / stride
        assert size // feature.stride - 1 <= value.shape[1] <= -(-size // feature.stride), (feature, value.shape)
        np.testing.assert_array_equal(value, intermediate)


@once
@pytest.mark.parametrize("arch", BACKBONE_ARCHS, ids=[a.name for a in BACKBONE_ARCHS])
def test_out_indices_pick_features(arch):
    declared = arch.feature_info({k: v for k, v in arch.testing.tiny.items() if k not in APP_ARGS})
    ends = (-1, 0) if len(declared) > 1 else (-1,)  # a plain ViT has one feature: -1 and 0 name the same one
    picked = build_tiny(arch, features_only=True, out_indices=ends)
    assert list(picked.output) == [declared[i].key for i in ends]
    with pytest.raises(ValueError, match="out_indices"):
        build_tiny(arch, features_only=True, out_indices=(len(declared),))
    with pytest.raises(ValueError, match="out_indices"):
        build_tiny(arch, out_indices=(0,))


@once
def test_other_num_classes(image_arch):
    model = build_tiny(image_arch, num_classes=7)
    (out,) = outputs(model, tiny_inputs(image_arch))
    assert out.shape == (2, 7)


@once
def test_input_shape_validation(image_arch):
    small = image_arch.testing.min_input_size // 2
    with pytest.raises(ValueError, match="at least"):
        build_tiny(image_arch, input_shape=(small, small, 3))
    with pytest.raises(ValueError, match="height, width, channels"):
        build_tiny(image_arch, input_shape=(64, 3))
    with pytest.raises(ValueError, match="pooling"):
        build_tiny(image_arch, pooling="avg")
    with pytest.raises(ValueError, match="pooling"):
        build_tiny(image_arch, include_top=False, pooling="sum")


def test_dynamic_input_size(image_arch):
    model = build_tiny(image_arch, input_shape=(None, None, 3))
    size = image_arch.testing.min_input_size * 2
    (out,) = outputs(model, np.zeros((1, size, size + 8, 3), "float32"))
    assert out.shape[0] == 1


# JAX, whose run is the longest (every new dtype recompiles), checks bfloat16, its native mixed type; the
# TensorFlow and torch runs check both.
POLICIES = ["mixed_bfloat16"] if BACKEND == "jax" else ["mixed_float16", "mixed_bfloat16"]


@pytest.mark.parametrize("policy", POLICIES)
def test_mixed_precision_forward(arch, policy):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = build_tiny(arch)
        outs = outputs(model, tiny_inputs(arch))
    finally:
        keras.config.set_dtype_policy(previous)
    assert all(np.all(np.isfinite(out)) for out in outs)
    if arch.example_inputs is None:
        assert outs[0].dtype == np.float32  # the classifier's activation runs in float32


@pytest.mark.skipif(BACKEND != "tensorflow", reason="LiteRT export is checked once, in the TensorFlow-backend run")
def test_litert_export_matches_keras(arch, tmp_path):
    from keras_hyper.export import export_litert

    if not arch.litert:
        pytest.skip(f"{arch.name} declares litert=False: its operators have no builtin LiteRT lowering (see its card)")

    model = shared_tiny(arch)
    report = export_litert(
        model, tmp_path / "model.tflite", sample=tiny_inputs(arch, batch=1), batch_size=arch.litert_batch
    )
    assert report.batch_size == arch.litert_batch  # any batch (verified at 1 and 4) unless declared
    assert report.bytes > 0
    assert not any(op.startswith(("FlexDelegate", "Flex", "CUSTOM")) for op in report.ops), report.ops
    assert report.max_abs_diff <= 1e-4, report


@once
@pytest.mark.parametrize("arch,variant", VARIANTS, ids=[v.name for _, v in VARIANTS])
def test_variant_parameter_count(arch, variant):
    assert count_params(lambda: arch.builder(**variant.kwargs)) == variant.num_params
    assert applications.model_info(variant.name).num_params == variant.num_params


FUSED_ARCHS = [a for a in ARCHS if a.reparameterize]


@pytest.mark.parametrize("arch", FUSED_ARCHS, ids=[a.name for a in FUSED_ARCHS])
def test_reparameterize_keeps_outputs(arch):
    model = build_tiny(arch) if arch.example_inputs is not None else build_tiny(arch, classifier_activation=None)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial statistics, so that a wrong fold shows
        if isinstance(layer, keras.layers.BatchNormalization):
            for weight in layer.weights:
                low = 0.5 if weight is layer.moving_variance else -0.5
                weight.assign(rng.uniform(low, 1.5, weight.shape).astype("float32"))
    fused = arch.reparameterize(model)
    x = tiny_inputs(arch)
    (expected,) = outputs(model, x)
    (got,) = outputs(fused, x)
    np.testing.assert_allclose(got, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in fused.layers)
    # merged, not merely copied: fewer layers (parameters may grow: DCLS's dense kernels)
    assert len(fused.layers) < len(model.layers)


REFERENCE_ARCHS = [a for a in ARCHS if a.reference]


@pytest.mark.parametrize("arch", REFERENCE_ARCHS, ids=[a.name for a in REFERENCE_ARCHS])
def test_reference_parity(arch):
    """Every case of the architecture's reference folder, converted, reproduces the official output."""
    results = reference.check(arch, reference_dir(arch.reference.folder))
    failed = [r for r in results if not r.ok]
    assert not failed, failed
