"""Constructor parameters that keep the tests of every estimator fast (few iterations
for the iterative ones), shared by the test modules that loop over all estimators."""

FAST_PARAMS = {
    "NearestPrototypeClassifier": {"random_state": 0},
    # The sklearn checks fit with integer labels derived from a feature (classes of 1-3
    # samples), so one prototype per class; K > 1 is covered in tests/test_ood_*.py.
    "PrototypeMixtureDetector": {"n_prototypes": 1, "random_state": 0},
    "KNNDetector": {"n_neighbors": 3},
    "GaussianPrototypeClassifier": {"random_state": 0},
    # Few L-BFGS steps keep the tests fast (they may warn ConvergenceWarning).
    "GLVQClassifier": {"max_iter": 20, "random_state": 0},
    "GMLVQClassifier": {"max_iter": 20, "random_state": 0},
    "RBFClassifier": {"max_iter": 20, "random_state": 0},
    "CBCClassifier": {"max_iter": 20, "random_state": 0},
    "LaplacianFewShotClassifier": {"max_iter": 20},
    "LaplacianKMeans": {"n_clusters": 3, "random_state": 0},
    # Small heads, few epochs at a high learning rate (they may warn
    # ConvergenceWarning).
    "DeepGaussianPrototypeClassifier": {
        "hidden_layer_sizes": (16, 8),
        "max_iter": 20,
        "learning_rate_init": 0.05,
        "random_state": 0,
    },
    "DeepCBCClassifier": {
        "hidden_layer_sizes": (8,),
        "max_iter": 20,
        "learning_rate_init": 0.05,
        "random_state": 0,
    },
    # One prototype per class (the checks' classes have 1-3 samples).
    "DeepPrototypeMixtureDetector": {
        "n_prototypes": 1,
        "hidden_layer_sizes": (16,),
        "max_iter": 10,
        "learning_rate_init": 0.01,
        "random_state": 0,
    },
}

# One or two real hyperparameters per estimator, for the GridSearchCV tests:
# {param: [values]}.
PARAM_GRIDS = {
    "NearestPrototypeClassifier": {"n_prototypes": [1, 2]},
    "PrototypeMixtureDetector": {"n_prototypes": [1, 4]},
    "MahalanobisDetector": {"method": ["class", "agnostic"]},
    "KNNDetector": {"n_neighbors": [3, 10], "normalize": [True, False]},
    "GaussianPrototypeClassifier": {"covariance_type": ["tied", "full"]},
    "GLVQClassifier": {"n_prototypes": [1, 2], "activation": ["sigmoid", "identity"]},
    "GMLVQClassifier": {"n_components": [None, 2]},
    "RBFClassifier": {"loss": ["margin", "robust"]},
    "CBCClassifier": {"reasoning": ["stable", "original"]},
    "LaplacianFewShotClassifier": {"lam": [0.0, 0.7], "n_neighbors": [3, 5]},
    "LaplacianKMeans": {"lam": [0.5, 1.0]},
    "DeepGaussianPrototypeClassifier": {"margin": [0.0, 0.2]},
    "DeepCBCClassifier": {"loss": ["margin", "robust"]},
    "DeepPrototypeMixtureDetector": {"score_type": ["mixture", "max_similarity"]},
}
