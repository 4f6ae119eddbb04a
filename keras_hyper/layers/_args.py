"""Argument checks shared by the layers and models: one wording for each kind of error, which tests match on."""

import numbers


def positive_ints(value, rank, name):
    """`value` (an int or `rank` ints, as Keras' conv arguments) as a tuple of `rank` positive ints."""
    values = (value,) * rank if isinstance(value, int) else tuple(value)
    if len(values) != rank or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
        raise ValueError(f"{name} must be a positive integer or {rank} positive integers, got {value!r}.")
    return values


def check_positive(**values):
    """Each keyword's value is a positive int (bools rejected); the error names the argument."""
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}.")


def check_non_negative(**values):
    """Each keyword's value is an int >= 0 (bools rejected); the error names the argument."""
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{key} must be a non-negative integer, got {value!r}.")


def check_at_least(minimum, **values):
    """Each keyword's value is an int >= `minimum` (bools rejected); the error names the argument."""
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}.")


def check_rate(**values):
    """Each keyword's value is a number in [0, 1): a dropout or drop-path rate, a label smoothing, a Keras
    momentum; the error names the argument."""
    for key, value in values.items():
        if not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
            raise ValueError(f"{key} must be in [0, 1), got {value!r}.")


def static_spatial_size(x, who, why):
    """The `(H, W)` of a channels-last map, which must be static: `who` (e.g. "RCNet's fusion node") needs it
    because `why` (a clause); the error says how to get static sizes."""
    size = tuple(x.shape[1:3])
    if any(s is None for s in size):
        raise ValueError(
            f"{who} needs static spatial sizes ({why}), got a map of shape {tuple(x.shape)}: build the model with "
            f"fixed input sizes or call it on concrete data."
        )
    return size
