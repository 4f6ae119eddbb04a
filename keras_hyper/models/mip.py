"""MIP hypernetworks (Gonzalez Ortiz, Guttag, Dalca, "Magnitude Invariant Parametrizations Improve Hypernetwork
Learning", ICLR 2024, arXiv:2304.07645; paper 2 in PAPERS.md), as the official library builds them: hyperlight
(JJGO/hyperlight) makes chosen parameters of ANY main network external (`hl.hypernetize(main, modules=[...] |
parameters=[...])`) and a `HyperNet(input_shapes, output_shapes=main.external_shapes(), hidden_sizes, encoding,
fc_kws)` MLP generates them from hyperparameters h in [0, 1].

- `hypernet_model(main_network, ...)`: any Keras main network (a layer or model) whose variables named in
  `hypernetized` (hyperlight's names: `conv1` for a whole layer, `conv3.weight` for one parameter) are generated
  by a `HyperlightNetwork` (a `keras_hyper.layers.HyperNetwork` that generates a chosen subset of its target's
  weights); the other variables are the main network's own, trained as usual.
- `mip_convnet(...)`: the library README's "HyperConvNet" family, the registered model: a ConvNet of valid
  convolutions (`channels`, `kernel_sizes`) with LeakyReLU(0.01) and 2x2 max pools (`pool_after`), global average
  pooling and the `fc` classifier (logits); by default all its convolutions are generated.
- `convert_mip(state_dict, model, output_names=None)`: a hyperlight checkpoint (the HyperNet's `backbone.*` and
  the main network's own parameters and buffers) into either.

Inputs: the main network's input (an image (B, H, W, C) for the ConvNet) and the hyperparameters (B, n), or a dict
of named ones (hyperlight's `input_shapes`, flattened in sorted-name order); a batch shares one set of generated
weights, those of its first sample's h (hyperlight generates one set per h; a main network cannot take a batch of
kernels). Layer names: `hypernet` (its MLP `hidden_<i>` = hyperlight's `backbone.block<i>_lin`, `output` =
`backbone.output`) wrapping the main network (`convnet`: `conv1`..`conv<N>`, with the head `avg_pool`, `fc`).
A main-network layer named `a-b` holds hyperlight's module `a.b` (PyTorch names cannot hold '-', Keras paths no '.').
"""

import math

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers._args import check_positive
from keras_hyper.layers.conv import Conv2D
from keras_hyper.layers.hypernetwork import PARAMETRIZATIONS, HyperNetwork
from keras_hyper.models import _base

LEAKY_SLOPE = 0.01

# Keras variable name -> the PyTorch parameter or buffer name of the same tensor
TORCH_NAMES = {
    "kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "embeddings": "weight",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}
# hyperlight's `fc_kws["nonlinearity"]` (a torch.nn class name) -> the Keras activation computing the same function
NONLINEARITIES = {
    "LeakyReLU": "leaky_relu",  # slope 0.01, torch's default (HyperNetwork's "leaky_relu")
    "ReLU": "relu",
    "Tanh": "tanh",
    "Sigmoid": "sigmoid",
    "GELU": "gelu",  # exact (erf) in both
    "SiLU": "silu",
    "ELU": "elu",
    "SELU": "selu",
    "Softplus": "softplus",
    "Mish": "mish",
}
ENCODINGS = ("auto", "cos|sin", "z|1-z", None)


def _is_pair(shape):
    return isinstance(shape, (list, tuple)) and len(shape) == 2 and isinstance(shape[0], (list, tuple))


def named_variables(target):
    """`{id(variable): (name, layer, variable)}` for every variable of `target`, named as hyperlight names the
    same tensor of the PyTorch main network: the path of layer names below `target` ('-' read as '.'), then the
    PyTorch name (`kernel`/`gamma`/`embeddings` -> `weight`, `beta` -> `bias`, `moving_mean` -> `running_mean`,
    `moving_variance` -> `running_var`). Random-generator states are left out."""
    names = {}

    def walk(layer, prefix):
        for child in layer._flatten_layers(include_self=False, recursive=False):
            walk(child, f"{prefix}{mapping.torch_prefix(child.name)}.")
        for variable in layer.weights:
            if "seed_generator" not in variable.path:
                name = f"{prefix}{TORCH_NAMES.get(variable.name, variable.name)}"
                names.setdefault(id(variable), (name, layer, variable))

    walk(target, "")
    return names


def select_variables(target, hypernetized):
    """The trainable variables of `target` that `hypernetized` names, as hyperlight selects them: a module name
    (`conv2`, `body.0`) takes that layer's own parameters, a parameter name (`conv3.weight`) that one."""
    named = [entry for entry in named_variables(target).values() if entry[2].trainable]
    chosen, unknown = set(), []
    for entry in hypernetized:
        hits = [v for name, _, v in named if name == entry or name.rpartition(".")[0] == entry]
        if not hits:
            unknown.append(entry)
        chosen.update(id(v) for v in hits)
    if unknown:
        raise ValueError(
            f"hypernetized names {unknown} match no trainable variable of {target.name!r}; its parameters are "
            f"{[name for name, _, _ in named]}."
        )
    return chosen


@keras.saving.register_keras_serializable(package="keras_hyper")
class HyperlightNetwork(HyperNetwork):
    """A `keras_hyper.layers.HyperNetwork` that generates only the target variables `hypernetized` names
    (hyperlight's `hypernetize(main, modules=..., parameters=...)`: module names such as `conv2` for all of a
    layer's parameters, parameter names such as `conv3.weight`; see `named_variables`); None generates all of
    them, as `HyperNetwork` does. The other trainable variables of the target stay its own and are trained as
    usual. Every other argument is `HyperNetwork`'s.
    """

    def __init__(self, target, conditioning="data", *, hypernetized=None, **kwargs):
        super().__init__(target, conditioning, **kwargs)
        if hypernetized is not None:
            if isinstance(hypernetized, str) or not all(isinstance(name, str) for name in hypernetized):
                raise ValueError(f"hypernetized must be None or a list of names, got {hypernetized!r}.")
            hypernetized = tuple(hypernetized)
            if not hypernetized:
                raise ValueError("hypernetized must name at least one parameter (None: all of them).")
        self.hypernetized = hypernetized

    def build(self, input_shape):
        x_shape = input_shape[0] if _is_pair(input_shape) else input_shape
        if not self.target.built:
            self.target.build(tuple(x_shape))
        regular = []
        if self.hypernetized is not None:
            chosen = select_variables(self.target, self.hypernetized)
            regular = [v for v in self.target.trainable_weights if id(v) not in chosen]
        # the base class generates the target's trainable variables: hide the regular ones while it builds
        for v in regular:
            v.trainable = False
        try:
            super().build(input_shape)
        finally:
            for v in regular:
                v.trainable = True

    def get_config(self):
        config = super().get_config()
        config["hypernetized"] = None if self.hypernetized is None else list(self.hypernetized)
        return config


def _hypernet_kwargs(parametrization, encoding, nonlinearity):
    """`HyperNetwork` arguments: the parametrization's preset with hyperlight's `encoding` (None: no encoding;
    "auto": the preset's) and `nonlinearity` (a torch.nn class name or a Keras activation; None: the preset's)."""
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(f"parametrization must be one of {list(PARAMETRIZATIONS)}, got {parametrization!r}.")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {list(ENCODINGS)}, got {encoding!r}.")
    preset = PARAMETRIZATIONS[parametrization]
    kwargs = dict(parametrization=parametrization)
    if encoding is None and preset["encoding"] is not None:
        # HyperNetwork reads encoding=None as "the preset's": spell the preset out on the one without an encoding
        kwargs = dict(
            parametrization="default",
            additive_output=preset["additive_output"],
            initialization=preset["initialization"],
            activation=preset["activation"],
        )
    elif encoding != "auto":
        kwargs["encoding"] = encoding
    if nonlinearity is not None:
        kwargs["activation"] = NONLINEARITIES.get(nonlinearity, nonlinearity)
    return kwargs


def _hyper_inputs(hyperparameters):
    """The hyperparameter input(s): one (B, n) input for an int, a dict of named inputs for hyperlight's
    `input_shapes` (name -> shape)."""
    if isinstance(hyperparameters, dict):
        if not hyperparameters:
            raise ValueError("hyperparameters must name at least one input.")
        inputs = {}
        for key in sorted(hyperparameters):
            shape = (hyperparameters[key],) if isinstance(hyperparameters[key], int) else hyperparameters[key]
            shape = tuple(shape)
            if not shape or any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in shape):
                raise ValueError(f"hyperparameters[{key!r}] must be a shape of positive integers, got {shape!r}.")
            inputs[key] = keras.Input(shape, name=key)
        return inputs
    check_positive(num_hyperparameters=hyperparameters)
    return keras.Input((hyperparameters,), name="hyperparameters")


def _hypernet(target, hypernetized, hidden_sizes, parametrization, encoding, nonlinearity):
    return HyperlightNetwork(
        target,
        "data",
        hypernetized=hypernetized,
        hidden_units=tuple(hidden_sizes),
        name="hypernet",
        **_hypernet_kwargs(parametrization, encoding, nonlinearity),
    )


def hypernet_model(
    main_network,
    *,
    hypernetized=None,
    hyperparameters=10,
    hidden_sizes=(16, 64, 128),
    parametrization="mip",
    encoding="auto",
    nonlinearity=None,
    input_shape=None,
    weights=None,
    name="mip_hypernet",
):
    """Wraps any Keras main network in a hyperlight-style MIP hypernetwork: `model([x, h])` is the main network's
    output on x with the variables `hypernetized` names generated from h.

    Args:
        main_network: a Keras layer or model (built, or buildable on `input_shape`); name its layers after the
            PyTorch modules (`body-0` for `body.0`) to load hyperlight checkpoints.
        hypernetized: hyperlight's selection: module names (all of a layer's parameters) and parameter names
            (`head.weight`); None: every trainable variable.
        hyperparameters: hyperlight's `input_shapes`: an int n (one input (B, n) named "hyperparameters") or a dict
            name -> shape (a dict input, flattened in sorted-name order as hyperlight does).
        hidden_sizes: `HyperNet(hidden_sizes=...)`, the MLP's widths (may be empty).
        parametrization: "mip" (hyperlight's: cos|sin encoding, independent weights, hyperlight init) or "default".
        encoding: hyperlight's `encoding`: "cos|sin", "z|1-z" or None (none); "auto" keeps the parametrization's.
        nonlinearity: hyperlight's `fc_kws["nonlinearity"]` ("LeakyReLU", "ReLU", "Tanh", "GELU", ... or a Keras
            activation); None keeps the parametrization's.
        input_shape: the main network's input shape (without batch); default: `main_network.input_shape`.
        weights: None or a local hyperlight checkpoint (see `convert_mip`).
    """
    if not isinstance(main_network, keras.layers.Layer):
        raise ValueError(f"main_network must be a Keras layer or model, got {main_network!r}.")
    if input_shape is None:
        input_shape = getattr(main_network, "input_shape", None)
        if input_shape is None:
            raise ValueError("input_shape is needed for a main network without a defined input.")
        input_shape = input_shape[1:]
    x = keras.Input(tuple(input_shape), name="inputs")
    h = _hyper_inputs(hyperparameters)
    hypernet = _hypernet(main_network, hypernetized, hidden_sizes, parametrization, encoding, nonlinearity)
    return _base.finish([x, h], hypernet([x, h]), name=name, weights=weights, arch=ARCH)


def _pair(size):
    return (size, size) if isinstance(size, int) and not isinstance(size, bool) else tuple(size)


def min_size(kernel_sizes, pool_after):
    """The smallest image side whose ConvNet features are at least 1 pixel (the README ConvNet: 22)."""
    kernels = [_pair(k) for k in kernel_sizes]
    need = [1, 1]
    for index in range(len(kernels), 0, -1):
        if index in pool_after:
            need = [2 * n for n in need]
        need = [n + k - 1 for n, k in zip(need, kernels[index - 1])]
    return max(need)


def _check_convnet(channels, kernel_sizes, pool_after):
    def positive(value):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    if not channels or not all(positive(c) for c in channels):
        raise ValueError(f"channels must be positive integers, at least one, got {channels!r}.")
    if len(kernel_sizes) != len(channels):
        raise ValueError(f"kernel_sizes must give one size per convolution ({len(channels)}), got {kernel_sizes!r}.")
    for size in kernel_sizes:
        pair = _pair(size) if positive(size) or isinstance(size, (list, tuple)) else None
        if pair is None or len(pair) != 2 or not all(positive(k) for k in pair):
            raise ValueError(f"kernel_sizes entries must be positive integers or pairs of them, got {size!r}.")
    if not all(positive(i) and i <= len(channels) for i in pool_after):
        raise ValueError(f"pool_after must hold convolution numbers 1..{len(channels)}, got {pool_after!r}.")


def _convnet(input_shape, channels, kernel_sizes, pool_after, num_classes=None):
    layers = [keras.Input(input_shape)]
    for i, (width, size) in enumerate(zip(channels, kernel_sizes)):
        layers += [Conv2D(width, _pair(size), name=f"conv{i + 1}"), keras.layers.LeakyReLU(LEAKY_SLOPE)]
        if i + 1 in pool_after:
            layers.append(keras.layers.MaxPooling2D(2))
    if num_classes is not None:
        layers += [keras.layers.GlobalAveragePooling2D(name="avg_pool"), keras.layers.Dense(num_classes, name="fc")]
    return keras.Sequential(layers, name="convnet")


def mip_convnet(
    channels=(16, 32, 64, 64),
    hidden_sizes=(16, 64, 128),
    num_hyperparameters=10,
    *,
    kernel_sizes=(5, 3, 3, 3),
    pool_after=(2, 3),
    hypernetized=None,
    parametrization="mip",
    encoding="auto",
    nonlinearity=None,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    num_classes=10,
    classifier_activation=None,
    name="mip_convnet",
):
    """Builds the hyperlight README HyperConvNet family: a hypernetwork MLP (`hidden_sizes`, LeakyReLU) generating
    the convolutions of a ConvNet from `num_hyperparameters` inputs in [0, 1].

    Args:
        channels: the convolutions' widths (README: 16, 32, 64, 64), any number of them.
        hidden_sizes: the hypernetwork's hidden widths (README: 16, 64, 128; may be empty).
        num_hyperparameters: width of the hyperparameter input h (README: 10), or a dict name -> shape of named
            hyperparameters (hyperlight's `input_shapes`).
        kernel_sizes: one per convolution, an int or a (height, width) pair (README: 5, 3, 3, 3); valid padding.
        pool_after: the convolutions (numbered from 1) followed by a 2x2 max pool (README: 2 and 3).
        hypernetized: hyperlight's selection of generated parameters (`conv2`, `conv3.weight`, `fc`...); None: every
            convolution (README: `hl.find_modules_of_type(main, [nn.Conv2d])`), the head staying regular.
        parametrization: "mip" (cos|sin encoding, independent weights, hyperlight init) or "default".
        encoding, nonlinearity: hyperlight's `encoding` and `fc_kws["nonlinearity"]`, as in `hypernet_model`.
        include_top, pooling, num_classes, classifier_activation: as in keras.applications; the head (part of the
            main network, as in hyperlight) is global average pooling + `fc`; logits by default.
        weights: None or a local checkpoint (a hyperlight HyperNet state dict `backbone.*`, with the main
            network's own parameters such as `fc.*`; see `convert_mip`).
        input_tensor, input_shape: the image input, default (28, 28, 1); at least `min_size(kernel_sizes,
            pool_after)` pixels a side (README ConvNet: 22).
    Returns:
        A `keras.Model` taking `[image (B, H, W, C), hyperparameters (B, num_hyperparameters) or a dict]`.
    """
    _base.validate_head(include_top, pooling, num_classes, classifier_activation)
    channels, kernel_sizes, pool_after = tuple(channels), tuple(kernel_sizes), tuple(pool_after)
    _check_convnet(channels, kernel_sizes, pool_after)
    if input_shape is None and input_tensor is None:
        input_shape = (28, 28, 1)
    smallest = min_size(kernel_sizes, pool_after)
    image = _base.image_input(input_tensor, input_shape, default_size=28, min_size=smallest, name="image")
    h = _hyper_inputs(num_hyperparameters)
    if hypernetized is None:
        hypernetized = [f"conv{i + 1}" for i in range(len(channels))]
    target = _convnet(tuple(image.shape[1:]), channels, kernel_sizes, pool_after, num_classes if include_top else None)
    x = _hypernet(target, hypernetized, hidden_sizes, parametrization, encoding, nonlinearity)([image, h])
    x = _base.predictions(x, classifier_activation) if include_top else _base.pool(x, pooling)
    return _base.finish([image, h], x, name=name, weights=weights, arch=ARCH)


def torch_order(shape):
    """Index map from a Keras-layout weight, flattened, to the official (PyTorch-layout) flat position: Keras
    (*spatial, in, out) is PyTorch's (out, in, *spatial) transposed."""
    rank = len(shape)
    if rank < 2:
        return np.arange(int(np.prod(shape)))
    torch_shape = (shape[-1], shape[-2], *shape[:-2])
    return np.arange(int(np.prod(shape))).reshape(torch_shape).transpose(*range(2, rank), 1, 0).ravel()


def _layout(layer, variable):
    """`(PyTorch shape, PyTorch array -> Keras array)` of one variable of a main network."""
    shape = tuple(int(d) for d in variable.shape)
    rank = len(shape)
    if variable.name == "kernel" and rank >= 2:
        if isinstance(layer, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)):
            # PyTorch (C * m, 1, *k), output channel c * m + j; Keras (*k, C, m)
            channels, multiplier = shape[-2], shape[-1]

            def depthwise(w):
                w = np.reshape(w, (channels, multiplier, *shape[:-2]))
                return np.transpose(w, (*range(2, rank), 0, 1))

            return (channels * multiplier, 1, *shape[:-2]), depthwise
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)):
            # PyTorch (out, in, *k) (Linear (out, in)); Keras (*k, in, out)
            return (shape[-1], shape[-2], *shape[:-2]), lambda w: np.transpose(w, (*range(2, rank), 1, 0))
    elif rank <= 1 or isinstance(layer, keras.layers.Embedding):
        return shape, lambda w: np.asarray(w)
    raise ValueError(
        f"No PyTorch layout known for variable {variable.path!r} of {type(layer).__name__} {layer.name!r} "
        "(supported: Dense, Conv1D/2D/3D, DepthwiseConv1D/2D kernels, Embedding tables, 1-D vectors)."
    )


def _row_order(torch_shape, to_keras):
    """Index map from a Keras-layout tensor, flattened, to its PyTorch flat position."""
    return to_keras(np.arange(math.prod(torch_shape)).reshape(torch_shape)).ravel()


def _hypernet_layer(model):
    layers = [layer for layer in model.layers if isinstance(layer, HyperNetwork)]
    if len(layers) != 1:
        raise ValueError(f"convert_mip needs a model with one hypernetwork layer, {model.name!r} has {len(layers)}.")
    layer = layers[0]
    if layer.granularity != "whole" or layer.generator is not None:
        raise ValueError("A hyperlight HyperNet is an MLP with one output layer: granularity='whole', no generator.")
    return layer


def convert_mip(state_dict, model, output_names=None):
    """Fills a `hypernet_model` / `mip_convnet` from a hyperlight checkpoint: the `HyperNet` state dict
    (`backbone.block<i>_lin.*`, `backbone.output.*`) merged with the main network's own state dict (its regular
    parameters and buffers, e.g. `fc.*`, `bn.running_mean`; keys as `named_variables` names them).

    `output_names`: hyperlight's generated parameters in its output order (`list(hypernet.output_shapes)`, i.e.
    `main.external_shapes()`: module registration order); None assumes the Keras main network's variable order
    (true when its layers come in the order the PyTorch modules are registered). The output rows of each
    generated tensor are reordered from PyTorch's layout to Keras'; the target's own generated variables get the
    independent weights (the output bias), what the main network computes with when the MLP's output is zero. A
    HyperNet built with `fc_kws={"out_bias": False}` has no `backbone.output.bias`: its independent weights are 0.
    """
    m = mapping.StateDictMapper(state_dict, model)
    hypernet = _hypernet_layer(model)
    for i, layer in enumerate(hypernet.hidden):
        m.dense(layer, f"backbone.block{i}_lin")
    names = named_variables(hypernet.target)
    generated = [names[id(v)] for v in hypernet.generated_variables]
    layouts = {name: _layout(layer, variable) for name, layer, variable in generated}
    if output_names is None:
        output_names = [name for name, _, _ in generated]
    output_names = list(output_names)
    ours = [name for name, _, _ in generated]
    if sorted(output_names) != sorted(ours):
        raise ValueError(
            f"output_names {output_names} are not the generated parameters of {model.name!r}: {ours} (missing: "
            f"{sorted(set(ours) - set(output_names))}, unexpected: {sorted(set(output_names) - set(ours))})."
        )
    offsets, offset = {}, 0
    for name in output_names:
        offsets[name] = offset
        offset += math.prod(layouts[name][0])
    order = np.concatenate([offsets[name] + _row_order(*layouts[name]) for name in ours])  # Keras -> hyperlight row
    head = hypernet.heads[0]
    m.assign(head.kernel, "backbone.output.weight", lambda w: w.T[:, order])
    if "backbone.output.bias" in state_dict or "backbone.output.weight" not in state_dict:
        m.assign(head.bias, "backbone.output.bias", lambda b: b[order])
    else:  # out_bias=False: no independent weights
        head.bias.assign(np.zeros(head.bias.shape, head.bias.dtype))
        m.assigned.add(id(head.bias))
    independent = np.asarray(keras.ops.convert_to_numpy(head.bias))
    start = 0
    for variable in hypernet.generated_variables:
        size = math.prod(variable.shape)
        variable.assign(independent[start : start + size].reshape(variable.shape))
        m.assigned.add(id(variable))
        start += size
    generated_ids = {id(v) for v in hypernet.generated_variables}
    for key, (name, layer, variable) in names.items():
        if key not in generated_ids:
            m.assign(variable, name, _layout(layer, variable)[1])
    for layer in model.layers:
        if layer is not hypernet and layer.weights and not m.standard(layer, mapping.torch_prefix(layer.name)):
            raise ValueError(f"convert_mip: no mapping for layer {layer.name!r} outside the hypernetwork.")
    m.finish()


def _inputs(batch):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(batch, 28, 28, 1)).astype("float32")
    return image, rng.uniform(size=(batch, 1)).astype("float32")


_PAPER = _base.Paper("Magnitude Invariant Parametrizations Improve Hypernetwork Learning", "2304.07645", 2)

VARIANTS = (
    # the README's count: the HyperNet's parameters (7,801,920 of them its output layer), without the ConvNet's
    # regular fc head (650), which the headless variant leaves out too
    _base.Variant(
        "mip_hyperconvnet",
        dict(include_top=False, pooling="avg"),
        num_params=7_811_664,
        input_size=28,
        builder_name="MIPHyperConvNet",
    ),
)

ARCH = _base.Architecture(
    name="mip",
    builder=mip_convnet,
    convert=convert_mip,
    paper=_PAPER,
    variants=VARIANTS,
    license="Apache-2.0",
    source="https://github.com/JJGO/hyperlight",
    testing=_base.Testing(
        # the fixture's shrunk ConvNet
        tiny=dict(channels=(4, 8, 8, 8), hidden_sizes=(16, 32), num_hyperparameters=1),
        min_input_size=min_size((5, 3, 3, 3), (2, 3)),
    ),
    mean=(0.0,),
    std=(1.0,),
    example_inputs=_inputs,
    kind="hypernetwork",
)
