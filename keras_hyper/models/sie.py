"""SIE's hypernetwork predictor (Garrido, Najman, LeCun, "Self-supervised learning of Split Invariant Equivariant
representations", ICML 2023, arXiv:2302.10283; paper 54 in PAPERS.md).

`sie_predictor` is the official `ParametrizedNet`: a hypernetwork maps the transformation latent z (B, latent) to
the flat parameters of an MLP (`GeneratedMLP`), which maps the equivariant embedding (B, E) of one view to the
predicted embedding (B, E) of the transformed view. The hypernetwork is `"linear"` (one Linear) or `"deep"`
(Linear, ReLU, Linear, ReLU, Linear, all latent wide but the last); the predicted MLP is one E -> E map
(`predictor=()`) or has hidden widths, optional generated biases and optional ReLUs between its layers.

The variants are the README configuration (ResNet-18, `--equi 256`, `--mlp 2048-2048-2048`, so an equivariant
embedding of 2048 * 256 / 512 = 1024, linear hypernetwork without biases) for rotations (latent 4, a quaternion)
and rotations + colour (latent 6). No checkpoints are published. Layer names follow the official state dict
(`hypernet-net-0` for `hypernet.net.0`). The full SIE model (ResNet-18 backbone, the invariant and equivariant
projectors, the online evaluator) is not built here: see zoo/sie.md.
"""

import keras
import numpy as np

from keras_hyper.convert import mapping
from keras_hyper.layers._args import check_positive
from keras_hyper.layers.sie import GeneratedMLP, generated_params_count
from keras_hyper.models import _base

HYPERNETWORKS = ("linear", "deep")


def sie_predictor(
    equivariant_size=1024,
    latent_size=4,
    *,
    hypernetwork="linear",
    bias_hypernet=False,
    predictor=(),
    bias_pred=False,
    predictor_relu=False,
    weights=None,
    name="sie_predictor",
):
    """Builds SIE's hypernetwork predictor.

    Args:
        equivariant_size: width E of the equivariant embedding (official: 1024 for the README run).
        latent_size: width of the transformation latent (4: rotation quaternion; 6: rotation + colour).
        hypernetwork: "linear" (one Linear latent -> P) or "deep" (Linear(latent, latent), ReLU, Linear(latent,
            latent), ReLU, Linear(latent, P)); P is the size of the generated MLP.
        bias_hypernet: biases in the hypernetwork's Linear layers.
        predictor: hidden widths of the generated MLP (official `--predictor "h1-h2"`; empty: one E -> E map).
        bias_pred: whether the hypernetwork also generates the MLP's biases.
        predictor_relu: ReLU between the generated layers.
        weights: None or a local file (official `ParametrizedNet` state dict, or a `.weights.h5`).
        name: model name.

    Returns:
        A `keras.Model` taking `[embedding (B, E), latent (B, latent_size)]` and returning `(B, E)`.
    """
    check_positive(equivariant_size=equivariant_size, latent_size=latent_size)
    if hypernetwork not in HYPERNETWORKS:
        raise ValueError(f"hypernetwork must be one of {HYPERNETWORKS}, got {hypernetwork!r}.")
    predictor = tuple(predictor)
    for width in predictor:
        check_positive(**{"predictor hidden widths": width})
    sizes = (equivariant_size, *predictor, equivariant_size)
    num_generated = generated_params_count(sizes, bias_pred)

    embedding = keras.Input((equivariant_size,), name="embedding")
    latent = keras.Input((latent_size,), name="latent")
    h = latent
    if hypernetwork == "deep":
        for index in (0, 2):
            h = keras.layers.Dense(latent_size, use_bias=bias_hypernet, name=f"hypernet-net-{index}")(h)
            h = keras.layers.ReLU(name=f"hypernet-net-{index + 1}")(h)
    last = 4 if hypernetwork == "deep" else 0
    params = keras.layers.Dense(num_generated, use_bias=bias_hypernet, name=f"hypernet-net-{last}")(h)
    out = GeneratedMLP(sizes, use_bias=bias_pred, activation="relu" if predictor_relu else None, name="predictor")(
        [embedding, params]
    )
    return _base.finish([embedding, latent], out, name=name, weights=weights, arch=ARCH)


def convert_sie_predictor(state_dict, model):
    """Fills a predictor from the official `ParametrizedNet` state dict (`hypernet.net.{0,2,4}.*`)."""
    m = mapping.StateDictMapper(state_dict, model)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            m.dense(layer, mapping.torch_prefix(layer.name))
    m.finish()


def fixture_kwargs(meta):
    """Builder kwargs of a fixture case (official `ParametrizedNet(equivariant_size, latent_size, args)`)."""
    args = meta["kwargs"]["args"]
    hidden = tuple(int(width) for width in args["predictor"].split("-") if width)
    return dict(
        equivariant_size=meta["kwargs"]["equivariant_size"],
        latent_size=meta["kwargs"]["latent_size"],
        hypernetwork=args["hypernetwork"],
        bias_hypernet=args["bias_hypernet"],
        predictor=hidden,
        bias_pred=args["bias_pred"],
        predictor_relu=args["predictor_relu"],
    )


def _example_inputs(batch):
    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(batch, 8)).astype("float32")
    quaternion = rng.normal(size=(batch, 4))
    return embedding, (quaternion / np.linalg.norm(quaternion, axis=1, keepdims=True)).astype("float32")


_README = dict(equivariant_size=1024, hypernetwork="linear", bias_hypernet=False, predictor=(), bias_pred=False)

VARIANTS = (
    _base.Variant(
        "sie_predictor_rot", dict(_README, latent_size=4), num_params=4_194_304, builder_name="SIEPredictorRot"
    ),
    _base.Variant(
        "sie_predictor_rotcolor",
        dict(_README, latent_size=6),
        num_params=6_291_456,
        builder_name="SIEPredictorRotColor",
    ),
)

ARCH = _base.Architecture(
    name="sie_predictor",
    builder=sie_predictor,
    convert=convert_sie_predictor,
    paper=_base.Paper("Self-supervised learning of Split Invariant Equivariant representations", "2302.10283", 54),
    variants=VARIANTS,
    license="GPL-3.0 (official code; no weights published)",
    source="https://github.com/facebookresearch/SIE",
    testing=_base.Testing(
        # the `tiny` fixture's configuration: deep hypernetwork with biases, generated 8-12-8 MLP with biases and ReLU
        tiny=dict(
            equivariant_size=8,
            latent_size=4,
            hypernetwork="deep",
            bias_hypernet=True,
            predictor=(12,),
            bias_pred=True,
            predictor_relu=True,
        ),
    ),
    # no `fixture`: harness parity is image-only; tests/models/test_sie.py checks both official cases
    example_inputs=_example_inputs,
    kind="embedding",
)
