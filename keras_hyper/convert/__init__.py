"""Reading official checkpoints and mapping their names and layouts onto Keras variables.

Generic only: no architecture-specific knowledge (each architecture's `convert_<arch>` lives beside its
builder in `keras_hyper.models`).
"""
