"""Data loaders: bundled demo data and real embedding sets from the shared data folder."""

from ._clinc150 import DATA_ENV_VAR, find_data_file, load_clinc150
from ._demo import load_demo_data
from ._intents import load_intents_sample

__all__ = [
    "DATA_ENV_VAR",
    "find_data_file",
    "load_clinc150",
    "load_demo_data",
    "load_intents_sample",
]
