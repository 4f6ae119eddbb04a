"""Terminator (Harvie Zhang, "HyperZ.Z.W Operator Connects Slow-Fast Networks for Full Context Interaction",
arXiv:2401.17948; paper 5 in PAPERS.md).

A stack of Slow-Fast Neural Encoding (SFNE) blocks at full resolution, with no residual connections and no
downsampling, then global average pooling and a Linear head. Block i widens C to `expansions[i] * C` channels:
CIFAR's 3 -> 12 -> 36 -> 72 -> 144 -> 288. Each block (`_sfne_block`) computes from its input x

- a global hyper-kernel W (`SlowNet`, from coordinates only) and the context-dependent kernel `Z = x * W`;
- fast = IS(RGU(Z) + RGU(x)), a channel-mixing Linear IS(M(x)) and a hyper-channel interaction IS(HCI(x))
  (IS: instance standardisation);
- three global branches, Z times each of them as a matrix over the spatial axes (`GlobalContextProduct`), a
  SiLU gate of the first, and a hyper interaction gating x with it;
- four local branches: depthwise hyper-kernels of sizes (3, 9, 5, 7) generated from (x, HCI, M, x) filter
  (HCI, x, x, M), each followed by a Linear, batch standardisation, GELU and a scalar bias;
- these ten maps, plus earlier blocks' outputs tiled to C channels (`pre_inputs`: the official model feeds
  block 0's output to block 2, block 1's to blocks 3 and 4, block 2's to block 4), are concatenated and
  compressed by a Linear "bottleneck" to the block's width, then G-IBS, GELU, a scalar bias and channel dropout.

The blocks' global kernels also feed the slow neural loss (added while training). Layer names follow the modules
of the authors' code (`blocks-2-slow_net_l2` for its `blocks.2.fast_multi_branch.slow_net_l2`).

Input `(B, H, W, 3)` (`in_channels` for others), H, W >= 32 (the hyper-kernels are learned on a `grid_size`
grid, 32 for CIFAR, and are regenerated for other sizes); features `(B, H, W, 288)`; logits `(B, num_classes)`.
"""

import keras

from keras_hyper.convert import mapping
from keras_hyper.layers._args import check_positive
from keras_hyper.layers.hyperzzw import ContextKernel, GlobalContextProduct, LocalHyperConv, LocalSlowNet, SlowNet
from keras_hyper.layers.terminator import (
    GroupedStandardization,
    HyperChannelInteraction,
    HyperInteraction,
    InstanceStandardization,
    RecursiveGatedUnit,
    ScalarBias,
    SlowNeuralLoss,
)
from keras_hyper.layers.torch_defaults import kaiming_normal
from keras_hyper.models import _base

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
LOCAL_LAYERS = 2  # multiplicative layers of every slow network but the global one (official configuration)


def _linear(units, name, use_bias=True):
    """A per-pixel Linear (the official 1x1 convolutions), kaiming_normal weights and zero bias as there."""
    return keras.layers.Dense(units, use_bias=use_bias, kernel_initializer=kaiming_normal(), name=name)


def _local_branch(x, kernel, prefix, *, norm_kwargs, use_bias):
    """The official LocalConv: the hyper-kernel's depthwise filtering, a Linear, batch standardisation, GELU,
    then the branch's scalar bias."""
    y = LocalHyperConv(name=f"{prefix}-conv")([x, kernel])
    y = _linear(x.shape[-1], f"{prefix}-channel_mixer", use_bias)(y)
    y = GroupedStandardization(1, name=f"{prefix}-batch_std", **norm_kwargs)(y)
    return keras.layers.Activation("gelu", name=f"{prefix}-act")(y)


def _sfne_block(x, prefix, pre, *, expansion, slow_layers, dropout, config):
    channels = x.shape[-1]
    grid = config["grid_size"]
    slow = dict(omega_0=config["omega_0"])
    norm_kwargs = dict(inference_batch_statistics=config["inference_batch_statistics"])
    redundant = config["redundant_biases"]

    def std(y, name):
        return InstanceStandardization(name=f"{prefix}-{name}")(y)

    kernel = SlowNet("space", grid, config["global_hidden"], slow_layers, name=f"{prefix}-slow_net_g", **slow)(x)
    context = ContextKernel(name=f"{prefix}-global_ctx_hk")([x, kernel])
    slow_mlp = RecursiveGatedUnit(grid, redundant, name=f"{prefix}-fast_kernel_rgu_2")(context)
    fast_mlp = RecursiveGatedUnit(grid, redundant, name=f"{prefix}-fast_kernel_rgu")(x)
    fast = std(keras.layers.Add(name=f"{prefix}-fast")([slow_mlp, fast_mlp]), "fast_std")
    mixer = std(_linear(channels, f"{prefix}-channel_mixer_mlp", redundant)(x), "mixer_std")
    hci = HyperChannelInteraction(config["channel_hidden"], LOCAL_LAYERS, name=f"{prefix}-channel_mixer_hci", **slow)
    eca = hci(x)
    if config["standardize_hci"]:
        eca = std(eca, "hci_std")

    out = GlobalContextProduct(name=f"{prefix}-global_fast")([context, fast])
    out_x = GlobalContextProduct(name=f"{prefix}-global_mixer")([context, mixer])
    out_eca = GlobalContextProduct(name=f"{prefix}-global_hci")([context, eca])
    out_glu = keras.layers.Activation("silu", name=f"{prefix}-glu")(out)  # sigmoid(out) * out
    hyper = HyperInteraction(*config["interact_hidden"], LOCAL_LAYERS, grid, name=f"{prefix}-hyper_interact", **slow)(
        [out, x]
    )

    local = []
    # (kernel source, filtered map) of the four local branches, in the official pairing
    for n, (size, source, target) in enumerate(
        zip(config["local_kernel_sizes"], (x, eca, mixer, x), (eca, x, x, mixer)), start=1
    ):
        local_kernel = LocalSlowNet(
            size, config["local_hidden"], LOCAL_LAYERS, config["local_context"], name=f"{prefix}-slow_net_l{n}", **slow
        )(source)
        y = _local_branch(
            target, local_kernel, f"{prefix}-local_interact_conv_{n}", norm_kwargs=norm_kwargs, use_bias=redundant
        )
        local.append(ScalarBias(name=f"{prefix}-bias{n}")(y) if redundant else y)

    tiled = [
        keras.layers.Concatenate(name=f"{prefix}-pre_{j}")([p] * (channels // p.shape[-1]))
        if p.shape[-1] != channels
        else p
        for j, p in pre
    ]
    # the official order; the first earlier output goes third, any further ones just before the hyper interaction
    branches = [
        out,
        local[1],
        *tiled[:1],
        fast,
        out_x,
        local[0],
        out_glu,
        local[2],
        out_eca,
        local[3],
        *tiled[1:],
        hyper,
    ]
    y = keras.layers.Concatenate(name=f"{prefix}-concat")(branches)
    y = _linear(channels * expansion, f"{prefix}-bottleneck_layer", redundant)(y)
    y = GroupedStandardization(config["norm_groups"], name=f"{prefix}-norm", **norm_kwargs)(y)
    y = keras.layers.Activation("gelu", name=f"{prefix}-nonlinear")(y)
    y = ScalarBias(name=f"{prefix}-bias")(y)
    if dropout > 0.0:
        y = keras.layers.SpatialDropout2D(dropout, name=f"{prefix}-dp")(y)
    return y, kernel


def _positive_ints(name, values, *, odd=False):
    values = tuple(values)
    if not values or any(
        not isinstance(v, int) or isinstance(v, bool) or v < 1 or (odd and v % 2 == 0) for v in values
    ):
        kind = "positive odd integers" if odd else "positive integers"
        raise ValueError(f"{name} must be a non-empty sequence of {kind}, got {values!r}.")
    return values


def terminator(
    x,
    expansions=(4, 3, 2, 2, 2),
    slow_layers=(3, 2, 2, 2, 2),
    pre_inputs=((), (), (0,), (1,), (2, 1)),
    dropout_rates=(0.0, 0.05, 0.05, 0.05, 0.05),
    local_kernel_sizes=(3, 9, 5, 7),
    global_hidden=64,
    local_hidden=32,
    channel_hidden=32,
    interact_hidden=(16, 64),
    norm_groups=12,
    grid_size=32,
    omega_0=2000.0,
    slow_loss_weight=1.0,
    inference_batch_statistics=False,
    local_context="sample",
    redundant_biases=True,
    standardize_hci=True,
    in_channels=3,
):
    """Builds a Terminator model (Harvie Zhang, "HyperZ.Z.W Operator Connects Slow-Fast Networks for Full Context
    Interaction", arXiv:2401.17948; defaults: the paper's CIFAR configuration). The public builder
    `keras_hyper.models.terminator.terminator` takes these arguments and the keras.applications ones (default
    input 32x32x3).

    Args:
        expansions: per SFNE block, the factor by which its bottleneck widens the channels (one entry per block).
        slow_layers: per block, the multiplicative layers of its global slow network.
        pre_inputs: per block, the indices of earlier blocks whose outputs it concatenates, tiled to its input's
            channels (the official `repeat`).
        dropout_rates: per block, the rate of the channel dropout at its end.
        local_kernel_sizes: the four local branches' odd hyper-kernel sizes.
        global_hidden, local_hidden, channel_hidden: widths of the global, local and hyper-channel slow networks.
        interact_hidden: widths of the hyper interaction's channel and spatial slow networks.
        norm_groups: G-IBS groups (every block's output width must be a multiple).
        grid_size: side of the grid the global hyper-kernels and bias maps are learned on (the training
            resolution); other input sizes read them regenerated on their own grid.
        omega_0: base frequency of the slow networks' sine filters at initialisation.
        slow_loss_weight: weight of the slow neural loss added while training (the official 1.0; 0 disables it).
        inference_batch_statistics: False (default): batch standardisation uses moving averages of the batch
            statistics at inference, so each sample's prediction is its own. True: the official code's batch
            statistics at inference too.
        local_context: 'sample' (default: each sample's local hyper-kernels from its own features) or 'batch'
            (the official code: from features averaged over the batch).
        redundant_biases: the official biases that a standardisation removes again, so that they never receive
            a gradient: the scalar bias after each local branch (they reach only the bottleneck, whose output G-IBS
            standardises per channel) and the biases of the Linear layers followed by a standardisation (local
            channel mixers, channel mixer, bottleneck, the RGUs' output). Kept by default for the official
            parameter count; `False` leaves them out.
        standardize_hci: the official instance standardisation of the hyper-channel interaction's output. It
            divides out the interaction's per-channel gate (up to its epsilon), so that the interaction's slow
            network receives almost no gradient; `False` keeps the gated map as it is.
        in_channels: the input's channels, the first block's width (3 for RGB; pass it with a matching
            `input_shape` for other images): every block widens it by its expansion.

    Features: `P0`, the last block's output (stride 1: no block downsamples; `in_channels * prod(expansions)`
    channels). Example:

        model = terminator(num_classes=100)
        grey = terminator(in_channels=1, norm_groups=4, input_shape=(32, 32, 1), num_classes=10)
        backbone = terminator(features_only=True)           # {"P0": (B, H, W, 288)}
    """
    config = _check(**{k: v for k, v in locals().items() if k != "x"})  # every argument but the input
    if x.shape[-1] != in_channels:
        raise ValueError(
            f"The input has {x.shape[-1]} channels, but in_channels={in_channels}; pass in_channels={x.shape[-1]}."
        )
    blocks = len(config["expansions"])
    outputs, kernels = [], []
    for i in range(blocks):
        x, kernel = _sfne_block(
            x,
            f"blocks-{i}",
            [(j, outputs[j]) for j in config["pre_inputs"][i]],
            expansion=config["expansions"][i],
            slow_layers=config["slow_layers"][i],
            dropout=config["dropout_rates"][i],
            config=config,
        )
        outputs.append(x)
        kernels.append(kernel)
    if slow_loss_weight > 0 and blocks > 1:
        x = SlowNeuralLoss(slow_loss_weight, name="slow_neural_loss")([x, *kernels])

    def head(x, num_classes):
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        return keras.layers.Dense(num_classes, kernel_initializer=kaiming_normal(), name="out_layer")(x)

    return _base.Network({"P0": x}, head)


def _check(
    expansions,
    slow_layers,
    pre_inputs,
    dropout_rates,
    local_kernel_sizes,
    interact_hidden,
    norm_groups,
    slow_loss_weight,
    local_context,
    in_channels,
    **config,
):
    """Validates the arguments; returns the configuration the blocks read, with `widths` (input, then every
    block's output)."""
    expansions = _positive_ints("expansions", expansions)
    blocks = len(expansions)
    slow_layers = _positive_ints("slow_layers", slow_layers)
    local_kernel_sizes = _positive_ints("local_kernel_sizes", local_kernel_sizes, odd=True)
    check_positive(in_channels=in_channels)
    pre_inputs = tuple(tuple(p) for p in pre_inputs)
    dropout_rates = tuple(dropout_rates)
    for arg, value in (("slow_layers", slow_layers), ("pre_inputs", pre_inputs), ("dropout_rates", dropout_rates)):
        if len(value) != blocks:
            raise ValueError(
                f"{arg} must have one entry per block ({blocks} for expansions={expansions}), got {value}."
            )
    if len(local_kernel_sizes) != 4:
        raise ValueError(f"local_kernel_sizes must hold the four local branches' sizes, got {local_kernel_sizes}.")
    if any(not 0.0 <= rate < 1.0 for rate in dropout_rates):
        raise ValueError(f"dropout_rates must be in [0, 1), got {dropout_rates}.")
    for i, pre in enumerate(pre_inputs):
        if any(not isinstance(j, int) or not 0 <= j < i for j in pre):
            raise ValueError(f"pre_inputs[{i}] must name earlier blocks (indices 0..{i - 1}), got {pre}.")
    if local_context not in ("sample", "batch"):
        raise ValueError(f"local_context must be 'sample' or 'batch', got {local_context!r}.")
    if slow_loss_weight < 0:
        raise ValueError(f"slow_loss_weight must be non-negative, got {slow_loss_weight!r}.")
    interact_hidden = tuple(interact_hidden)
    if len(interact_hidden) != 2:
        raise ValueError(f"interact_hidden must be (channel, spatial) widths, got {interact_hidden}.")
    widths = [in_channels]
    for expansion in expansions:
        widths.append(widths[-1] * expansion)
    if any(width % norm_groups for width in widths[1:]):
        raise ValueError(
            f"Every block's output width must be a multiple of norm_groups={norm_groups}, got {widths[1:]}."
        )
    return dict(
        config,
        expansions=expansions,
        slow_layers=slow_layers,
        pre_inputs=pre_inputs,
        dropout_rates=dropout_rates,
        local_kernel_sizes=local_kernel_sizes,
        interact_hidden=interact_hidden,
        norm_groups=norm_groups,
        local_context=local_context,
        widths=tuple(widths),
    )


def _features(**kwargs):
    return _base.pyramid(_check(**kwargs)["widths"][-1:], (1,))


# our layer suffix -> the official module under `blocks.i.fast_multi_branch` (or `blocks.i` for the block's bias)
_MODULES = {
    "fast_kernel_rgu": "Fast_Kernel_rgu",
    "fast_kernel_rgu_2": "Fast_Kernel_rgu_2",
    "channel_mixer_hci": "channel_mixer_hci.slow_net_gc",
}


def _slow_net(m, layer, prefix, linear_shape):
    """A slow network's MAGNet weights under `prefix` (`....Kernel`); 1x1 convolutions `(out, in, 1[, 1])`."""

    def linear(w):
        return w.reshape(w.shape[0], w.shape[1]).T

    for i, (kernel, bias) in enumerate(zip(layer.filter_kernels, layer.filter_biases)):
        m.assign(kernel, f"{prefix}.filters.{i}.linear.weight", linear)
        m.assign(bias, f"{prefix}.filters.{i}.linear.bias")
    for i, (kernel, bias) in enumerate(zip(layer.hidden_kernels, layer.hidden_biases)):
        m.assign(kernel, f"{prefix}.linears.{i}.weight", linear)
        m.assign(bias, f"{prefix}.linears.{i}.bias")
    m.assign(layer.out_kernel, f"{prefix}.output_linear.weight", linear)
    m.assign(layer.out_bias, f"{prefix}.output_linear.bias")
    bias_key = f"{prefix}.bias_pk" if isinstance(layer, LocalSlowNet) else f"{prefix}.bias_p"
    m.assign(layer.bias_map, bias_key, lambda w: w.reshape(linear_shape))
    if isinstance(layer, LocalSlowNet):
        m.assign(layer.reduce_kernel, f"{prefix}.fast_reduce.weight", linear)
        m.assign(layer.reduce_bias, f"{prefix}.fast_reduce.bias")
        m.assign(layer.context_kernel, f"{prefix}.fast_fc1.weight", linear)
        m.assign(layer.context_bias, f"{prefix}.fast_fc1.bias")
        for i, (kernel, bias) in enumerate(zip(layer.modulation_kernels, layer.modulation_biases)):
            m.assign(kernel, f"{prefix}.fast_linears_x.{i}.weight", linear)
            m.assign(bias, f"{prefix}.fast_linears_x.{i}.bias")


def convert_terminator(state_dict, model):
    """Fills `model` (built with `include_top=True`) from a state dict of the authors' `Terminator_image`.

    Strict: every tensor is consumed or ignored for a reason (`train_length`, a slow network's bookkeeping
    buffer), every variable assigned. The official model keeps no running statistics, so G-IBS's moving
    averages keep their initial values (zero mean, unit variance): build with `inference_batch_statistics=True`
    (and `local_context="batch"`) for the official outputs, or re-estimate them on data.
    """
    m = mapping.StateDictMapper(state_dict, model, ignore=(r".*\.train_length$",))
    for layer in model.layers:
        block, _, suffix = layer.name.partition("-")[2].partition("-")
        prefix = f"blocks.{block}.fast_multi_branch"
        if layer.name == "out_layer":
            m.dense(layer, "out_layer")
        elif isinstance(layer, GroupedStandardization):
            m.assigned.update(id(v) for v in layer.weights)  # no official counterpart (see above)
        elif isinstance(layer, SlowNet):
            side = layer.grid_size
            _slow_net(m, layer, f"{prefix}.{suffix}.Kernel", (side, side))
        elif isinstance(layer, LocalSlowNet):
            _slow_net(m, layer, f"{prefix}.{suffix}.Kernel", (layer.kernel_size,) * 2)
        elif isinstance(layer, HyperChannelInteraction):
            channels = layer.slow_net.bias_map.shape
            _slow_net(m, layer.slow_net, f"{prefix}.{_MODULES[suffix]}.Kernel", channels)
        elif isinstance(layer, HyperInteraction):
            channels = layer.channel_slow_net.bias_map.shape
            _slow_net(m, layer.channel_slow_net, f"{prefix}.hyper_interact.slow_net_gc_hi.Kernel", channels)
            side = layer.spatial_slow_net.grid_size
            _slow_net(m, layer.spatial_slow_net, f"{prefix}.hyper_interact.slow_net_gs_hi.Kernel", (side, side))
        elif isinstance(layer, RecursiveGatedUnit):
            key = f"{prefix}.{_MODULES[suffix]}"
            for part in ("k", "v", "q", "y"):
                m.assign(getattr(layer, f"{part}_kernel"), f"{key}.fast_linear_{part}.weight", mapping.dense_kernel)
                bias = getattr(layer, f"{part}_bias", None)  # absent without the redundant biases: key unexpected
                if bias is not None:
                    m.assign(bias, f"{key}.fast_linear_{part}.bias")
            m.assign(layer.bias_map, f"{key}.bias_p", lambda w: w.reshape(layer.grid_size, layer.grid_size))
        elif isinstance(layer, ScalarBias):
            key = f"blocks.{block}.bias" if suffix == "bias" else f"{prefix}.{suffix}"
            m.assign(layer.bias, key)
        elif isinstance(layer, keras.layers.Dense):
            m.dense(layer, f"{prefix}.{suffix.replace('-', '.')}")
    m.finish()


_PAPER = _base.Paper("HyperZ.Z.W Operator Connects Slow-Fast Networks for Full Context Interaction", "2401.17948", 5)


# The paper's CIFAR configuration (the authors' cfg/config.yaml); counts derived in zoo/terminator.md.
def _variant(classes, num_params):
    return _base.Variant(
        f"terminator_cifar{classes}",
        dict(num_classes=classes),
        num_params=num_params,
        input_size=32,
        crop_pct=1.0,
        builder_name=f"TerminatorCIFAR{classes}",
    )


VARIANTS = (_variant(10, 1_336_855), _variant(100, 1_362_865))

ARCH = _base.Architecture(
    name="terminator",
    # the slow net's per-sample kernel einsum lowers to a RESHAPE whose static shape keeps the batch as -1, which
    # the LiteRT interpreter rejects ("BytesRequired number of elements overflowed"): exported at batch 1
    litert_batch=1,
    network=terminator,
    features=_features,
    num_classes=10,
    input_size=32,
    min_size=32,
    convert=convert_terminator,
    paper=_PAPER,
    variants=VARIANTS,
    license="unknown (the authors' code was withdrawn; its surviving fork carries no licence)",
    source="https://arxiv.org/abs/2401.17948 (code: fork lalalune/Terminator @ 5d5b69f, no licence; read for facts)",
    classifier="out_layer",
    classifier_key="out_layer.weight",
    testing=_base.Testing(
        # Two narrow blocks (3 -> 12 -> 24 channels) with small slow networks and local kernels; the second block also
        # concatenates the first's output, as the official blocks 2-4 do with earlier ones. Hyper-kernels learned on a
        # 2 x 2 grid (read at 32 x 32, so the resampling runs too) and omega_0 = 1: with the official 32 x 32 grid's
        # output scaling and omega_0 = 2000 (filter weights near 1e4, which an Adam step of 1e-3 does not move in
        # float32), the hyper interaction's six-fold products of small factors get gradients near 1e-14 on noise
        # inputs, below Adam's epsilon. The redundant biases and the standardisation after the hyper-channel
        # interaction are left out, since they cut the gradient of their parameters (see the builder's arguments).
        tiny=dict(
            expansions=(4, 2),
            slow_layers=(2, 1),
            pre_inputs=((), (0,)),
            dropout_rates=(0.0, 0.05),
            local_kernel_sizes=(3, 5, 3, 3),
            global_hidden=8,
            local_hidden=8,
            channel_hidden=8,
            interact_hidden=(4, 8),
            norm_groups=12,
            grid_size=2,
            omega_0=1.0,
            redundant_biases=False,
            standardize_hci=False,
            num_classes=10,
        ),
        min_input_size=32,
    ),
    mean=CIFAR10_MEAN,
    std=CIFAR10_STD,
    interpolation="bilinear",
)

terminator = ARCH.builder
