"""Episode samplers and splitters for few-shot and open-set evaluation."""

from ._episodes import Episode, evaluate_episodes, sample_episodes, split_classes
from ._split import EpisodeSplit

__all__ = [
    "Episode",
    "EpisodeSplit",
    "evaluate_episodes",
    "sample_episodes",
    "split_classes",
]
