"""Run protolearn on a dask cluster (the optional ``protolearn[dask]`` extra).

- :func:`blockwise`: any per-row method of a fitted estimator (``predict``,
  ``score_samples``, ``decision_function``, ``transform``, ...) over a dask array or
  dask DataFrame, block by block, with the fitted model placed in the graph once;
- :func:`solve_episodes`: the batched few-shot solver
  (:func:`protolearn.transductive.laplacian_fewshot_episodes`) over dask arrays of
  episodes chunked along the task axis;
- :func:`evaluate_episodes`: :func:`protolearn.model_selection.evaluate_episodes`
  over a dask bag of episodes.

For ``predict`` / ``predict_proba`` / ``transform`` / ``score``, dask-ml's
:class:`dask_ml.wrappers.ParallelPostFit` works with every protolearn estimator as it
is; ``GridSearchCV`` and ``cross_validate`` distribute with joblib's dask backend
(see the "Scaling" page of the user guide).
"""

from ._dask import blockwise, evaluate_episodes, solve_episodes
from ._incremental import fit_blocks

__all__ = ["blockwise", "evaluate_episodes", "fit_blocks", "solve_episodes"]
