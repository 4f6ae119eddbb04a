"""Hypernetworks: a network that generates the weights of another (the *target*), after the design axes of
Chauhan et al., "A Brief Review of Hypernetworks in Deep Learning" (arXiv:2306.06955; paper 10 in PAPERS.md), with
the magnitude invariant parametrisation of Gonzalez Ortiz et al., "Magnitude Invariant Parametrizations Improve
Hypernetwork Learning" (ICLR 2024, arXiv:2304.07645; paper 2) as an option.

The target is any Keras layer or model (Dense, Conv2D, a Sequential...). It computes with the generated weights
through a functional call (`keras.StatelessScope`), so it works on every backend and exports: the target keeps
its own variables only as the shapes (and the initial values) of what is generated. The three utilities below
are the public building blocks other generators (e.g. the RNN one in `hypernetwork_rnn`) reuse:

- `target_shapes(target)`: the shapes of `target.trainable_weights`, in order;
- `split_params(flat, shapes)`: a flat (..., P) tensor -> one tensor of shape (..., *shape) per shape;
- `call_target(target, params, inputs, training=False)`: the target's output with `params` in place of its
  trainable weights (and its own values for the non-trainable ones).
"""

import math

import keras
import numpy as np
from keras import ops

from keras_hyper.layers._args import check_positive
from keras_hyper.layers.torch_defaults import kaiming_fan_out

CONDITIONINGS = ("task", "data", "noise")
GRANULARITIES = ("whole", "layer", "chunk")
ENCODINGS = (None, "cos|sin", "z|1-z")
INITIALIZATIONS = ("keras", "hyperlight")
PARAMETRIZATIONS = {
    # the usual hypernetwork: raw inputs, weights = MLP output (bias zero at init), Keras' default init
    "default": dict(encoding=None, additive_output=False, initialization="keras", activation="relu"),
    # MIP: inputs on the unit circle, weights = independent weights + MLP output, hyperlight's init
    "mip": dict(encoding="cos|sin", additive_output=True, initialization="hyperlight", activation="leaky_relu"),
}
LEAKY_SLOPE = 0.01  # torch's LeakyReLU default, the one hyperlight uses


def target_shapes(target):
    """The shapes of `target.trainable_weights` (the weights a hypernetwork generates), in order."""
    if not target.built:
        raise ValueError(f"The target {target.name!r} must be built before its weight shapes are known.")
    return [tuple(int(d) for d in v.shape) for v in target.trainable_weights]


def split_params(flat, shapes):
    """Cuts the last axis of `flat` (..., P), P = sum of the shapes' sizes, into tensors of shape (..., *shape),
    row-major, leading axes kept."""
    shapes = [tuple(shape) for shape in shapes]
    sizes = [math.prod(shape) for shape in shapes]
    if flat.shape[-1] is not None and flat.shape[-1] != sum(sizes):
        raise ValueError(
            f"split_params: the last axis of `flat` has {flat.shape[-1]} values, but the shapes {shapes} need "
            f"{sum(sizes)}."
        )
    if not shapes:
        return []
    lead = tuple(ops.shape(flat)[:-1])
    pieces = (
        ops.split(flat, [sum(sizes[: i + 1]) for i in range(len(sizes) - 1)], axis=-1) if len(sizes) > 1 else [flat]
    )
    return [ops.reshape(piece, lead + shape) for piece, shape in zip(pieces, shapes)]


def call_target(target, params, inputs, training=False):
    """Calls `target` on `inputs` with `params` (one tensor per `target.trainable_weights`, same shapes) in place
    of its trainable weights; its non-trainable state (BatchNorm statistics, random seeds) is read from the
    target and, in training, its updates are applied to the target's variables."""
    return _call_with(target, list(target.trainable_weights), params, inputs, training)


def _call_with(target, variables, params, inputs, training, update_state=True):
    if len(params) != len(variables):
        raise ValueError(
            f"call_target: {target.name!r} has {len(variables)} generated weights, got {len(params)} tensors."
        )
    generated = {id(v) for v in variables}
    others = [v for v in target.variables if id(v) not in generated]
    # values read here, outside the new scope, so that an enclosing stateless scope (JAX training) still supplies
    # the current state of the target's other variables
    mapping = [(v, ops.cast(p, v.dtype)) for v, p in zip(variables, params)] + [(v, v.value) for v in others]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        before = [scope.get_current_value(v) for v in others]
        outputs = target(inputs, training=training)
    if update_state and training:
        for v, old in zip(others, before):
            new = scope.get_current_value(v)
            if new is not old:
                v.assign(new)
    return outputs


def _is_pair(shape):
    """Whether a layer input shape is that of [x, conditioning] rather than of x alone."""
    return isinstance(shape, (list, tuple)) and len(shape) == 2 and isinstance(shape[0], (list, tuple))


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}.")


@keras.saving.register_keras_serializable(package="keras_hyper")
class HyperNetwork(keras.layers.Layer):
    """Generates the weights of `target` from a conditioning input and calls `target` with them.

    The review's (arXiv:2306.06955) design axes are arguments:

    - input (`conditioning`): `"task"`, a learned embedding of a task id (integer input (B,) or (B, 1), or, with
      no second input, the layer's active task, `set_task(t)`); `"data"`, a conditioning tensor (a second input
      (B, ...) or a dict of them, flattened in sorted-name order; without a second input, the target's input
      itself); `"noise"`, standard normal noise of `noise_dim` (sampled at every call, or given as second input).
    - output (`granularity`): `"whole"`, one head for every generated value; `"layer"`, one head per target weight;
      `"chunk"`, one shared head applied to the embedding joined with each of ceil(P / chunk_size) learned chunk
      embeddings, the chunks concatenated and cut to P.
    - variability (`dynamic`): False generates one set of weights per call, from the first sample's
      conditioning (a batch shares its task or hyperparameters); True generates weights per sample and maps the
      target over the batch (`keras.ops.vectorized_map`; a loop on torch, whose vmap cannot run convolutions).
    - architecture (`generator`): an MLP of `hidden_units` (default), or any Keras layer mapping the (encoded)
      conditioning (N, D) to features (N, F) that the heads read.

    MIP (arXiv:2304.07645; `parametrization="mip"`) encodes inputs in [0, 1] as [cos(pi z / 2), sin(pi z / 2)]
    (all cosines, then all sines) so that their norm is constant, uses LeakyReLU(0.01), and adds the heads' output
    to independent weights (the heads' biases; a separate vector for chunked output) initialised like a network's
    weights: hyperlight's scheme (`initialization="hyperlight"`: kaiming-normal fan-out hidden layers and output
    blocks, zero rows for generated biases, independent kernels kaiming-normal fan-in). `"default"` is the usual
    hypernetwork (raw input, ReLU, output bias starting at zero, Keras' init). `encoding`, `additive_output`,
    `initialization` and `activation` override the preset one by one.

    The target's own variables are not trained (they are marked non-trainable: the generated tensors replace
    them); they give the generated shapes and, with `additive_output` and Keras init, the independent weights'
    initial values. Non-trainable target state (BatchNorm statistics) is read and, in static mode, updated.

    Call: `layer(x)` or `layer([x, conditioning])`; output: the target's output on `x` (B, ...).

    Args:
        target: a Keras layer or model (built, or buildable on the shape of `x`).
        conditioning: "task", "data" or "noise".
        num_tasks, embedding_dim: task embeddings (conditioning="task").
        noise_dim: noise width (conditioning="noise").
        granularity: "whole", "layer" or "chunk"; chunk_size, chunk_embedding_dim for "chunk".
        dynamic: per-sample weights.
        hidden_units: the MLP generator's widths.
        parametrization: "default" or "mip"; encoding (None, "cos|sin", "z|1-z"), additive_output,
            initialization ("keras", "hyperlight"), activation (a Keras activation name; "leaky_relu" has slope
            0.01): None takes the preset's value.
        generator: None (the MLP) or a Keras layer (N, D) -> (N, F).
        task: the initial active task.
        seed: seed of the noise and of the hyperlight initialisation.
    """

    def __init__(
        self,
        target,
        conditioning="data",
        *,
        num_tasks=None,
        embedding_dim=8,
        noise_dim=8,
        granularity="whole",
        chunk_size=None,
        chunk_embedding_dim=8,
        dynamic=False,
        hidden_units=(32,),
        parametrization="default",
        encoding=None,
        additive_output=None,
        initialization=None,
        activation=None,
        generator=None,
        task=0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(target, keras.layers.Layer):
            raise ValueError(f"target must be a Keras layer or model, got {target!r}.")
        _choice("conditioning", conditioning, CONDITIONINGS)
        _choice("granularity", granularity, GRANULARITIES)
        _choice("parametrization", parametrization, PARAMETRIZATIONS)
        preset = PARAMETRIZATIONS[parametrization]
        encoding = preset["encoding"] if encoding is None else encoding
        additive_output = preset["additive_output"] if additive_output is None else bool(additive_output)
        initialization = preset["initialization"] if initialization is None else initialization
        activation = preset["activation"] if activation is None else activation
        _choice("encoding", encoding, ENCODINGS)
        _choice("initialization", initialization, INITIALIZATIONS)
        if activation != "leaky_relu":
            try:
                keras.activations.get(activation)
            except (ValueError, TypeError) as err:
                raise ValueError(f"Unknown activation {activation!r}.") from err
        if conditioning == "task":
            check_positive(num_tasks=num_tasks)
            if not isinstance(task, int) or not 0 <= task < num_tasks:
                raise ValueError(f"task must be an integer in [0, {num_tasks}), got {task!r}.")
        check_positive(embedding_dim=embedding_dim, noise_dim=noise_dim, chunk_embedding_dim=chunk_embedding_dim)
        if granularity == "chunk":
            check_positive(chunk_size=chunk_size)
        hidden_units = tuple(hidden_units)
        for units in hidden_units:
            check_positive(**{"hidden_units entries": units})
        if generator is not None and not isinstance(generator, keras.layers.Layer):
            raise ValueError(f"generator must be None (an MLP) or a Keras layer, got {generator!r}.")
        self.target = target
        self.conditioning = conditioning
        self.num_tasks = num_tasks
        self.embedding_dim = embedding_dim
        self.noise_dim = noise_dim
        self.granularity = granularity
        self.chunk_size = chunk_size
        self.chunk_embedding_dim = chunk_embedding_dim
        self.dynamic = bool(dynamic)
        self.hidden_units = hidden_units
        self.parametrization = parametrization
        self.encoding = encoding
        self.additive_output = additive_output
        self.initialization = initialization
        self.activation = activation
        self.generator = generator
        self.task = task
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if conditioning == "noise" else None

    # -- construction ---------------------------------------------------------------------------------------
    def _split_inputs(self, inputs):
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 2:
                raise ValueError(f"{self.name}: call with x or [x, conditioning], got {len(inputs)} inputs.")
            return inputs[0], inputs[1]
        return inputs, None

    def _condition_width(self, x_shape, cond_shape):
        if self.conditioning == "task":
            return self.embedding_dim
        if self.conditioning == "noise":
            return self.noise_dim
        shapes = [cond_shape[k] for k in sorted(cond_shape)] if isinstance(cond_shape, dict) else [cond_shape]
        if cond_shape is None:
            shapes = [x_shape]
        dims = [d for shape in shapes for d in shape[1:]]
        if any(d is None for d in dims):
            raise ValueError(f"{self.name}: data conditioning needs static feature dimensions, got {shapes}.")
        width = sum(math.prod(shape[1:]) for shape in shapes)
        return width * (1 if self.encoding is None else 2)

    def build(self, input_shape):
        if _is_pair(input_shape):
            x_shape, cond_shape = input_shape
        else:
            x_shape, cond_shape = input_shape, None
        x_shape = tuple(x_shape)
        if not self.target.built:
            self.target.build(x_shape)
        variables = list(self.target.trainable_weights)
        if not variables:
            raise ValueError(f"The target {self.target.name!r} has no trainable weights to generate.")
        # plain attribute: Keras would track the variables again (and torch register them twice)
        object.__setattr__(self, "_generated", variables)
        for v in variables:
            v.trainable = False
        self.shapes = [tuple(int(d) for d in v.shape) for v in variables]
        self.sizes = [math.prod(shape) for shape in self.shapes]
        self.num_generated = sum(self.sizes)

        policy = self.dtype_policy
        hyperlight = self.initialization == "hyperlight"

        def hidden_init(offset):
            if not hyperlight:
                return "glorot_uniform"
            return kaiming_fan_out(seed=self._seed(offset))

        if self.conditioning == "task":
            self.task_embedding = keras.layers.Embedding(
                self.num_tasks, self.embedding_dim, dtype=policy, name="task_embedding"
            )
            self.task_embedding.build((None,))
            self.active_task = self.add_weight(
                shape=(),
                dtype="int32",
                initializer=keras.initializers.Constant(self.task),
                trainable=False,
                name="active_task",
            )
        width = self._condition_width(x_shape, cond_shape)
        if self.granularity == "chunk":
            self.num_chunks = -(-self.num_generated // self.chunk_size)
            self.chunk_embeddings = self.add_weight(
                shape=(self.num_chunks, self.chunk_embedding_dim),
                initializer=keras.initializers.RandomNormal(stddev=1.0, seed=self.seed),
                name="chunk_embeddings",
            )
            width += self.chunk_embedding_dim
        if self.generator is None:
            self.hidden = []
            for i, units in enumerate(self.hidden_units):
                layer = keras.layers.Dense(
                    units, kernel_initializer=hidden_init(100 + i), dtype=policy, name=f"hidden_{i}"
                )
                layer.build((None, width))
                self.hidden.append(layer)
                width = units
        else:
            if not self.generator.built:
                self.generator.build((None, width))
            width = self.generator.compute_output_shape((None, width))[-1]
        self.features = width
        if self.granularity == "whole":
            self.heads = [keras.layers.Dense(self.num_generated, dtype=policy, name="output")]
        elif self.granularity == "layer":
            self.heads = [keras.layers.Dense(size, dtype=policy, name=f"head_{i}") for i, size in enumerate(self.sizes)]
        else:
            self.heads = [
                keras.layers.Dense(self.chunk_size, kernel_initializer=hidden_init(99), dtype=policy, name="chunk_head")
            ]
        for head in self.heads:
            head.build((None, width))
        if self.granularity == "chunk" and self.additive_output:
            self.independent = self.add_weight(shape=(self.num_generated,), initializer="zeros", name="independent")
        self._initialize()

    def _seed(self, offset):
        return None if self.seed is None else self.seed + offset

    def _independent_values(self):
        """Initial independent weights, flat (P,): the target's own initial values, kernels (ndim >= 2) drawn as
        hyperlight draws them under its init (kaiming normal, fan-in, gain sqrt(2))."""
        own = ops.concatenate([ops.reshape(ops.convert_to_tensor(v.value, "float32"), (-1,)) for v in self._generated])
        if self.initialization != "hyperlight":
            return own
        kernel = np.concatenate(
            [np.full(size, len(v.shape) >= 2, bool) for v, size in zip(self._generated, self.sizes)]
        )
        std = np.concatenate(
            [
                np.full(size, math.sqrt(2.0 / math.prod(v.shape[:-1])) if len(v.shape) >= 2 else 0.0, "float32")
                for v, size in zip(self._generated, self.sizes)
            ]
        )
        drawn = keras.random.normal((self.num_generated,), seed=self._seed(1000)) * ops.convert_to_tensor(std)
        return ops.where(kernel, drawn, own)

    def _initialize(self):
        if self.initialization == "hyperlight" and self.granularity != "chunk":
            # hyperlight's split init: each target weight's block of output columns is initialised as its own
            # layer (kaiming normal, fan-out = the block's size), blocks of generated biases at zero; one draw per
            # head, scaled column by column
            stds = [
                np.full(size, 0.0 if v.name in ("bias", "beta") else math.sqrt(2.0 / size), "float32")
                for v, size in zip(self._generated, self.sizes)
            ]
            if self.granularity == "whole":
                stds = [np.concatenate(stds)]
            for i, (head, std) in enumerate(zip(self.heads, stds)):
                drawn = keras.random.normal((self.features, std.size), seed=self._seed(i))
                head.kernel.assign(drawn * ops.convert_to_tensor(std))
        if self.additive_output:
            values = self._independent_values()
            if self.granularity == "chunk":
                self.independent.assign(values)
            elif self.granularity == "whole":
                self.heads[0].bias.assign(values)
            else:
                offsets = np.cumsum([0] + self.sizes)
                for head, start, end in zip(self.heads, offsets[:-1], offsets[1:]):
                    head.bias.assign(values[int(start) : int(end)])

    @property
    def generated_variables(self):
        """The target's variables whose values are generated (in `target_shapes` order)."""
        return list(self._generated)

    @property
    def trainable(self):
        return keras.layers.Layer.trainable.fget(self)

    @trainable.setter
    def trainable(self, value):
        keras.layers.Layer.trainable.fset(self, value)
        # Layer.trainable's setter marks every variable of the target trainable again; the generated ones stay not
        for v in getattr(self, "_generated", ()):
            v.trainable = False

    def set_task(self, task):
        """Makes `task` the active task (the one used when no task ids are given)."""
        if self.conditioning != "task":
            raise ValueError(f"set_task needs conditioning='task', this layer has {self.conditioning!r}.")
        if not isinstance(task, int) or not 0 <= task < self.num_tasks:
            raise ValueError(f"task must be an integer in [0, {self.num_tasks}), got {task!r}.")
        self.task = task
        self.active_task.assign(task)

    # -- generation -----------------------------------------------------------------------------------------
    def _activation(self, x):
        if self.activation == "leaky_relu":
            return ops.leaky_relu(x, negative_slope=LEAKY_SLOPE)
        return keras.activations.get(self.activation)(x)

    def _condition(self, x, cond, static):
        """The conditioning vectors (N, D): N = 1 (static: the first sample's) or the batch size (dynamic)."""

        def rows(t):
            return t[:1] if static else t

        if self.conditioning == "task":
            if cond is not None:
                ids = ops.reshape(ops.cast(cond, "int32"), (-1,))
            elif static:
                ids = ops.reshape(self.active_task, (1,))
            else:
                ids = ops.zeros_like(ops.cast(ops.reshape(x, (ops.shape(x)[0], -1))[:, 0], "int32")) + self.active_task
            return self.task_embedding(rows(ids))
        if self.conditioning == "noise":
            if cond is None:
                count = 1 if static else ops.shape(x)[0]
                noise = keras.random.normal((count, self.noise_dim), seed=self.seed_generator)
                return ops.cast(noise, self.compute_dtype)
            return ops.cast(rows(cond), self.compute_dtype)
        if cond is None:
            parts = [x]
        elif isinstance(cond, dict):
            parts = [cond[k] for k in sorted(cond)]  # hyperlight's order: sorted by name
        else:
            parts = [cond]
        parts = [rows(ops.cast(p, self.compute_dtype)) for p in parts]
        parts = [ops.reshape(p, (ops.shape(p)[0], -1)) for p in parts]
        return self.encode(parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1))

    def encode(self, z):
        """The input encoding: MIP's cos|sin (all cosines, then all sines of pi z / 2), z|1-z, or none."""
        if self.encoding == "cos|sin":
            scaled = z * (math.pi / 2)
            return ops.concatenate([ops.cos(scaled), ops.sin(scaled)], axis=-1)
        if self.encoding == "z|1-z":
            return ops.concatenate([z, 1 - z], axis=-1)
        return z

    def _trunk(self, e):
        if self.generator is not None:
            return self.generator(e)
        for layer in self.hidden:
            e = self._activation(layer(e))
        return e

    def generate(self, embedding):
        """Flat generated weights (N, P) from conditioning vectors (N, D) (already embedded and encoded)."""
        if self.granularity == "chunk":
            # (N, 1, D) + (1, K, 1) and (1, K, C) + (N, 1, 1) broadcast to every (sample, chunk) pair
            e = embedding[:, None, :] + ops.zeros_like(self.chunk_embeddings[None, :, :1])
            chunks = ops.cast(self.chunk_embeddings[None], e.dtype) + ops.zeros_like(embedding[:, None, :1])
            h = self._trunk(ops.concatenate([e, chunks], axis=-1))
            out = self.heads[0](h)
            flat = ops.reshape(out, (ops.shape(out)[0], self.num_chunks * self.chunk_size))[:, : self.num_generated]
            if self.additive_output:
                flat = flat + ops.cast(self.independent, flat.dtype)
            return flat
        h = self._trunk(embedding)
        outs = [head(h) for head in self.heads]
        return outs[0] if len(outs) == 1 else ops.concatenate(outs, axis=-1)

    def generated_weights(self, inputs):
        """The generated weights for `inputs` (as for `call`), one tensor per target weight: (*shape) in static
        mode, (B, *shape) in dynamic mode."""
        if not self.built:
            self.build(keras.tree.map_structure(lambda t: tuple(t.shape), inputs))
        x, cond = self._split_inputs(inputs)
        flat = self.generate(self._condition(x, cond, not self.dynamic))
        params = split_params(flat, self.shapes)
        return params if self.dynamic else [p[0] for p in params]

    def call(self, inputs, training=False):
        x, cond = self._split_inputs(inputs)
        if not self.dynamic:
            params = [p[0] for p in split_params(self.generate(self._condition(x, cond, True)), self.shapes)]
            return _call_with(self.target, self._generated, params, x, training)
        flat = self.generate(self._condition(x, cond, False))

        def one(args):
            sample_params, sample = args
            params = split_params(sample_params, self.shapes)
            out = _call_with(self.target, self._generated, params, sample[None], training, update_state=False)
            return out[0]

        if keras.backend.backend() == "torch":
            # torch.vmap cannot run Keras' torch convolutions (they query the memory format); map one by one
            return ops.map(one, (flat, x))
        return ops.vectorized_map(one, (flat, x))

    def compute_output_shape(self, input_shape):
        x_shape = input_shape[0] if _is_pair(input_shape) else input_shape
        return self.target.compute_output_spec(keras.KerasTensor(tuple(x_shape))).shape

    def get_config(self):
        config = super().get_config()
        config.update(
            target=keras.saving.serialize_keras_object(self.target),
            conditioning=self.conditioning,
            num_tasks=self.num_tasks,
            embedding_dim=self.embedding_dim,
            noise_dim=self.noise_dim,
            granularity=self.granularity,
            chunk_size=self.chunk_size,
            chunk_embedding_dim=self.chunk_embedding_dim,
            dynamic=self.dynamic,
            hidden_units=list(self.hidden_units),
            parametrization=self.parametrization,
            encoding=self.encoding,
            additive_output=self.additive_output,
            initialization=self.initialization,
            activation=self.activation,
            generator=None if self.generator is None else keras.saving.serialize_keras_object(self.generator),
            task=self.task,
            seed=self.seed,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["target"] = keras.saving.deserialize_keras_object(config["target"])
        if config.get("generator") is not None:
            config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        return cls(**config)
