"""Episode samplers and splitters for few-shot and open-set evaluation."""

__all__ = []
