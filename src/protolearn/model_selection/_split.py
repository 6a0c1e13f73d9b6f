"""Few-shot episodes as a scikit-learn cross-validator (``cv=`` of ``cross_val_score``,
``GridSearchCV``, ...)."""

from sklearn.model_selection import BaseCrossValidator
from sklearn.utils import check_consistent_length, column_or_1d

from ._episodes import _check_positive_int, _numpy, sample_episodes


class EpisodeSplit(BaseCrossValidator):
    """N-way K-shot episodes as train / test splits, for ``cv=``.

    Each split is one episode of :func:`sample_episodes`: the train indices are its
    support rows (``n_way * n_shot``), the test indices its query rows, all from the
    episode's classes.  So ``cross_val_score(estimator, X, y, cv=EpisodeSplit(...))``
    gives the per-episode query accuracy of an inductive few-shot classifier (the same
    numbers as :func:`evaluate_episodes` on the same episodes), and
    ``GridSearchCV(..., cv=EpisodeSplit(...))`` tunes its hyperparameters for
    few-shot use.  Combine it with :func:`split_classes` (``classes=``) to tune on one
    class pool and report on another.

    The test rows are scored against ``y``, so none-of-the-above queries (whose true
    label is not their class in ``y``) and transductive fits (which need the queries
    in ``fit``) are not offered here: use :func:`evaluate_episodes` for those.

    Parameters
    ----------
    n_way, n_shot, n_query : int, default=5, 1, 15
        Classes per episode, support rows per class, query rows per class.
    n_episodes : int, default=100
        Number of splits.
    imbalance : float or None, default=None
        None: ``n_query`` queries per class; a float ``alpha``: Dirichlet(alpha) query
        class proportions (see :func:`sample_episodes`).
    classes : array-like, default=None
        Draw the episode classes from these labels only.
    random_state : int, RandomState instance or None, default=None
        With an int, every call to :meth:`split` yields the same episodes (as
        scikit-learn's ``ShuffleSplit`` does); pass an int when the splits must agree
        between calls (e.g. for ``GridSearchCV`` to compare candidates on the same
        episodes).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import cross_val_score
    >>> from protolearn.classification import NearestPrototypeClassifier
    >>> from protolearn.model_selection import EpisodeSplit
    >>> X, y = load_digits(return_X_y=True)
    >>> cv = EpisodeSplit(n_way=5, n_shot=1, n_query=15, n_episodes=50, random_state=0)
    >>> scores = cross_val_score(NearestPrototypeClassifier(), X, y, cv=cv)
    >>> scores.shape
    (50,)
    """

    def __init__(
        self,
        *,
        n_way=5,
        n_shot=1,
        n_query=15,
        n_episodes=100,
        imbalance=None,
        classes=None,
        random_state=None,
    ):
        self.n_way = n_way
        self.n_shot = n_shot
        self.n_query = n_query
        self.n_episodes = n_episodes
        self.imbalance = imbalance
        self.classes = classes
        self.random_state = random_state

    def split(self, X, y=None, groups=None):
        """Yield ``(support_index, query_index)`` for each episode.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like or torch tensor (any device) of shape (n_samples,)
            Class labels (required: episodes are drawn class by class).
        groups : ignored

        Yields
        ------
        train : ndarray of int, the episode's support rows (sorted by class).
        test : ndarray of int, its query rows (shuffled).
        """
        if y is None:
            raise ValueError(
                "EpisodeSplit.split needs y: episodes are drawn class by class."
            )
        y = column_or_1d(_numpy(y))
        check_consistent_length(X, y)
        episodes = sample_episodes(
            y,
            n_way=self.n_way,
            n_shot=self.n_shot,
            n_query=self.n_query,
            n_episodes=self.n_episodes,
            imbalance=self.imbalance,
            classes=self.classes,
            random_state=self.random_state,
        )
        for ep in episodes:
            yield ep.support_index, ep.query_index

    def get_n_splits(self, X=None, y=None, groups=None):
        """The number of splits: ``n_episodes``."""
        _check_positive_int("n_episodes", self.n_episodes)
        return int(self.n_episodes)
