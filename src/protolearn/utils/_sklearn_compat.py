"""The one place where scikit-learn's private helpers are imported.

A scikit-learn upgrade that moves one of these touches only this file.
"""

from numbers import Integral, Real

from sklearn.base import _fit_context
from sklearn.utils._chunking import get_chunk_n_rows
from sklearn.utils._param_validation import (
    HasMethods,
    Hidden,
    Interval,
    RealNotInt,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import validate_data

__all__ = [
    "HasMethods",
    "Hidden",
    "Integral",
    "Interval",
    "Real",
    "RealNotInt",
    "StrOptions",
    "_fit_context",
    "get_chunk_n_rows",
    "validate_parameter_constraints",
    "validate_data",
]
