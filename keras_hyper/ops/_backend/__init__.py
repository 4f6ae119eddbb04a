"""Backend-specific fast paths of keras_hyper.ops; each module imports its own framework."""
