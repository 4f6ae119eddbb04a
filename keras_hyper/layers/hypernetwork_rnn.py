"""Chunked, task-conditioned hypernetworks for continual learning: an MLP generator (von Oswald et al.,
"Continual learning with hypernetworks", arXiv:1906.00695, as PyPI `hypnettorch`'s `ChunkedHMLP` computes it)
and the recurrent generator of Chandra et al., "Continual Learning with Dependency Preserving Hypernetworks"
(arXiv:2209.07712), whose consecutive chunks depend on each other through the RNN's state.

Both map integer task ids `(B,)` to the flat weight vector of a target network `(B, num_outputs)`: the vector
is cut into `ceil(num_outputs / chunk_size)` chunks of `chunk_size` values, each chunk is generated from the
task embedding (a learned `(num_tasks, task_embedding_size)` table) and, where `chunk_embedding_size > 0`, a
learned per-chunk embedding; the tail of the last chunk is discarded. `keras_hyper.training.continual` trains
them task after task with the output regulariser.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_hyper.layers._args import check_at_least

CELLS = ("lstm", "gru")


class _ChunkedGenerator(keras.layers.Layer):
    """Task and chunk embeddings and the chunk bookkeeping shared by the generators; subclasses map the
    per-chunk inputs `(B, num_chunks, chunk_embedding_size + task_embedding_size)` to chunks
    `(B, num_chunks, chunk_size)` in `_generate`."""

    def __init__(
        self, num_outputs, chunk_size, *, num_tasks=1, task_embedding_size=8, chunk_embedding_size=8, **kwargs
    ):
        super().__init__(**kwargs)
        check_at_least(
            1,
            num_outputs=num_outputs,
            chunk_size=chunk_size,
            num_tasks=num_tasks,
            task_embedding_size=task_embedding_size,
        )
        check_at_least(0, chunk_embedding_size=chunk_embedding_size)
        self.num_outputs = num_outputs
        self.chunk_size = chunk_size
        self.num_tasks = num_tasks
        self.task_embedding_size = task_embedding_size
        self.chunk_embedding_size = chunk_embedding_size
        self.num_chunks = math.ceil(num_outputs / chunk_size)

    @property
    def _input_size(self):
        return self.chunk_embedding_size + self.task_embedding_size

    def build(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"inputs must be task ids of shape (batch,), got shape {tuple(input_shape)}.")
        # Unit-variance embeddings, as hypnettorch initialises its conditional and chunk embeddings.
        self.task_embeddings = self.add_weight(
            shape=(self.num_tasks, self.task_embedding_size),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="task_embeddings",
        )
        if self.chunk_embedding_size:
            self.chunk_embeddings = self.add_weight(
                shape=(self.num_chunks, self.chunk_embedding_size),
                initializer=keras.initializers.RandomNormal(stddev=1.0),
                name="chunk_embeddings",
            )
        self._build_generator()

    def call(self, inputs, training=None):
        ids = ops.cast(inputs, "int32")
        task = ops.cast(ops.take(self.task_embeddings, ids, axis=0), self.compute_dtype)  # (B, E)
        batch = ops.shape(task)[0]
        per_chunk = ops.broadcast_to(ops.expand_dims(task, 1), (batch, self.num_chunks, self.task_embedding_size))
        if self.chunk_embedding_size:
            chunks = ops.cast(self.chunk_embeddings, self.compute_dtype)
            chunks = ops.broadcast_to(ops.expand_dims(chunks, 0), (batch, self.num_chunks, self.chunk_embedding_size))
            # Chunk embedding first, task embedding second: hypnettorch's input order.
            per_chunk = ops.concatenate([chunks, per_chunk], axis=-1)
        out = self._generate(per_chunk, training=training)  # (B, num_chunks, chunk_size)
        return ops.reshape(out, (-1, self.num_chunks * self.chunk_size))[:, : self.num_outputs]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_outputs)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_outputs=self.num_outputs,
            chunk_size=self.chunk_size,
            num_tasks=self.num_tasks,
            task_embedding_size=self.task_embedding_size,
            chunk_embedding_size=self.chunk_embedding_size,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_hyper")
class ChunkedHyperMLP(_ChunkedGenerator):
    """Chunked MLP hypernetwork (von Oswald et al., "Continual learning with hypernetworks", arXiv:1906.00695):
    every chunk comes out of the same MLP applied to `[chunk embedding, task embedding]`, chunks independently
    of each other. Numerically `hypnettorch.hnets.ChunkedHMLP(target_shapes, chunk_size, chunk_emb_size,
    cond_in_size=task_embedding_size, layers=hidden, num_cond_embs=num_tasks)` with its weights copied
    (PyTorch `(out, in)` matrices transposed).

    Args:
        num_outputs: size of the generated flat weight vector.
        chunk_size: values generated per chunk (the MLP's output width).
        num_tasks: task embeddings held.
        task_embedding_size, chunk_embedding_size: embedding widths (`chunk_embedding_size > 0` here: the
            chunk embedding is what tells the chunks apart).
        hidden: widths of the hidden layers.
        activation: activation of the hidden layers.

    Input: int task ids `(B,)`. Output: `(B, num_outputs)`.
    """

    def __init__(
        self,
        num_outputs,
        chunk_size,
        *,
        num_tasks=1,
        task_embedding_size=8,
        chunk_embedding_size=8,
        hidden=(100, 100),
        activation="relu",
        **kwargs,
    ):
        super().__init__(
            num_outputs,
            chunk_size,
            num_tasks=num_tasks,
            task_embedding_size=task_embedding_size,
            chunk_embedding_size=chunk_embedding_size,
            **kwargs,
        )
        if chunk_embedding_size == 0:
            raise ValueError("chunk_embedding_size must be positive for ChunkedHyperMLP, got 0.")
        self.hidden = tuple(hidden)
        for width in self.hidden:
            check_at_least(1, **{"hidden widths": width})
        self.activation = keras.activations.get(activation)
        self.fc = [
            keras.layers.Dense(width, activation=self.activation, dtype=self.dtype_policy, name=f"fc{i}")
            for i, width in enumerate(self.hidden)
        ]
        self.out = keras.layers.Dense(chunk_size, dtype=self.dtype_policy, name="out")

    def _build_generator(self):
        width = self._input_size
        for layer in self.fc:
            layer.build((None, self.num_chunks, width))
            width = layer.units
        self.out.build((None, self.num_chunks, width))

    def _generate(self, x, training=None):
        for layer in self.fc:
            x = layer(x)
        return self.out(x)

    def get_config(self):
        config = super().get_config()
        config.update(hidden=list(self.hidden), activation=keras.activations.serialize(self.activation))
        return config


@keras.saving.register_keras_serializable(package="keras_hyper")
class RNNHyperNetwork(_ChunkedGenerator):
    """Dependency-preserving RNN hypernetwork (Chandra et al., "Continual Learning with Dependency Preserving
    Hypernetworks", arXiv:2209.07712): an LSTM or GRU runs over the chunks of the target's weight vector, one
    step per chunk, with `[chunk embedding, task embedding]` as the step's input, and a linear head maps each
    step's state to the chunk's `chunk_size` values. Chunk i's weights are conditioned on chunks 0..i-1 through
    the recurrent state, so consecutive layers' weights are generated jointly, while the generator's size
    depends on `units` and `chunk_size`, not on the target's size.

    `grow(units=..., num_tasks=...)` returns a larger copy whose outputs for the existing tasks are unchanged:
    the new hidden units start with zero weights into the head and into the old units' gates, and new tasks get
    fresh embeddings (the paper's network growth as tasks arrive).

    Args:
        num_outputs: size of the generated flat weight vector.
        chunk_size: values generated per step.
        units: width of the recurrent state.
        cell: 'lstm' or 'gru' (Keras' cells; GRU with `reset_after=True`, PyTorch's formulation).
        unroll: unroll the recurrence over the chunks instead of a symbolic loop: faster for a few dozen
            chunks (and much faster in eager calls under JAX), larger graphs for many.
        num_tasks, task_embedding_size, chunk_embedding_size: as `ChunkedHyperMLP`; `chunk_embedding_size=0`
            feeds the task embedding alone, the recurrence telling the steps apart.

    Input: int task ids `(B,)`. Output: `(B, num_outputs)`.
    """

    def __init__(
        self,
        num_outputs,
        chunk_size,
        *,
        units=64,
        cell="lstm",
        unroll=False,
        num_tasks=1,
        task_embedding_size=8,
        chunk_embedding_size=8,
        **kwargs,
    ):
        super().__init__(
            num_outputs,
            chunk_size,
            num_tasks=num_tasks,
            task_embedding_size=task_embedding_size,
            chunk_embedding_size=chunk_embedding_size,
            **kwargs,
        )
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {cell!r}.")
        check_at_least(1, units=units)
        self.units = units
        self.cell = cell
        self.unroll = bool(unroll)
        rnn = keras.layers.LSTM if cell == "lstm" else keras.layers.GRU
        self.rnn = rnn(units, return_sequences=True, unroll=self.unroll, dtype=self.dtype_policy, name="rnn")
        self.head = keras.layers.Dense(chunk_size, dtype=self.dtype_policy, name="head")

    def _build_generator(self):
        self.rnn.build((None, self.num_chunks, self._input_size))
        self.head.build((None, self.num_chunks, self.units))

    def _generate(self, x, training=None):
        return self.head(self.rnn(x, training=training))

    def grow(self, *, units=None, num_tasks=None):
        """A copy with `units` recurrent units and `num_tasks` task embeddings (each at least the current
        value), generating the same weights as this layer for tasks `0..self.num_tasks-1`."""
        if not self.built:
            raise ValueError("grow() needs a built layer: call it on task ids first.")
        units = self.units if units is None else units
        num_tasks = self.num_tasks if num_tasks is None else num_tasks
        check_at_least(self.units, units=units)
        check_at_least(self.num_tasks, num_tasks=num_tasks)
        grown = self.__class__.from_config({**self.get_config(), "units": units, "num_tasks": num_tasks})
        grown.build((None,))
        old, new = self.units, units

        def by_gate(fresh, trained, rows=None):
            # Keras cells stack their gates along the last axis, `units` columns each.
            fresh = ops.convert_to_numpy(fresh).copy()
            trained = ops.convert_to_numpy(trained)
            for g in range(trained.shape[-1] // old):
                block = trained[..., g * old : (g + 1) * old]
                if rows is None:
                    fresh[..., g * new : g * new + old] = block
                else:
                    fresh[:rows, g * new : g * new + old] = block
                    # The new units must not reach the old units' gates, or the old tasks' weights would move.
                    fresh[rows:, g * new : g * new + old] = 0.0
            return fresh

        src, dst = self.rnn.cell, grown.rnn.cell
        dst.kernel.assign(by_gate(dst.kernel, src.kernel))
        dst.recurrent_kernel.assign(by_gate(dst.recurrent_kernel, src.recurrent_kernel, rows=old))
        dst.bias.assign(by_gate(dst.bias, src.bias))
        head = np.zeros(tuple(grown.head.kernel.shape), "float32")
        head[:old] = ops.convert_to_numpy(self.head.kernel)
        grown.head.kernel.assign(head)
        grown.head.bias.assign(self.head.bias)
        tasks = ops.convert_to_numpy(grown.task_embeddings).copy()
        tasks[: self.num_tasks] = ops.convert_to_numpy(self.task_embeddings)
        grown.task_embeddings.assign(tasks)
        if self.chunk_embedding_size:
            grown.chunk_embeddings.assign(self.chunk_embeddings)
        return grown

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, cell=self.cell, unroll=self.unroll)
        return config
