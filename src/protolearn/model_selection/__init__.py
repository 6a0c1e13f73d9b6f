"""Episode samplers and splitters for few-shot and open-set evaluation."""

from ._episodes import Episode, evaluate_episodes, sample_episodes, split_classes

__all__ = ["Episode", "evaluate_episodes", "sample_episodes", "split_classes"]
