"""
===========================================================
Deep prototype heads: training curve and learned prototypes
===========================================================

:class:`~protolearn.deep.DeepGaussianPrototypeClassifier` learns a linear projection of
the features onto the unit sphere and one Gaussian prototype per class there, with the
GPAM / CosFace margin loss; :class:`~protolearn.deep.DeepCBCClassifier` puts CBC on a
learned projection and certifies its predictions in the *input* space.  Both are trained
by skorch (the epoch history is in ``net_.history``).  On the digits data we plot the
training curves, the learned space with its prototypes, and the share of test digits
that are correct with a certified radius of at least r.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from protolearn.classification import CBCClassifier
from protolearn.datasets import load_demo_data
from protolearn.deep import DeepCBCClassifier, DeepGaussianPrototypeClassifier

d = load_demo_data("digits")
head = dict(hidden_layer_sizes=(32,), max_iter=30, learning_rate_init=0.01,
            random_state=0)  # fmt: skip
gauss = DeepGaussianPrototypeClassifier(**head).fit(d.X_train, d.y_train)
cbc = DeepCBCClassifier(**head).fit(d.X_train, d.y_train)
shallow = CBCClassifier(random_state=0).fit(d.X_train, d.y_train)
print(f"DeepGaussianPrototypeClassifier accuracy {gauss.score(d.X_test, d.y_test):.3f}")
print(f"DeepCBCClassifier accuracy {cbc.score(d.X_test, d.y_test):.3f} "
      f"(shallow CBCClassifier {shallow.score(d.X_test, d.y_test):.3f})")  # fmt: skip

# %%
# Training curves (skorch's history) and the learned space
# ---------------------------------------------------------
# The learned space is 32-dimensional; we show its two leading principal directions,
# the test digits (dots) and the class prototypes (stars).
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
axes[0].plot(gauss.loss_curve_, label="DeepGaussian (margin loss)")
axes[0].plot(cbc.net_.history[:, "train_loss"], label="DeepCBC (margin loss)")
axes[0].set(xlabel="epoch", ylabel="training loss", yscale="log")
axes[0].legend()
Z = gauss.transform(d.X_test)
mu = Z.mean(0)
_, _, Vt = np.linalg.svd(Z - mu, full_matrices=False)
P, C = (Z - mu) @ Vt[:2].T, (gauss.prototypes_ - mu) @ Vt[:2].T
axes[1].scatter(P[:, 0], P[:, 1], c=d.y_test, cmap="tab10", s=8, alpha=0.6)
axes[1].scatter(C[:, 0], C[:, 1], c=np.arange(10), cmap="tab10", marker="*", s=300,
                edgecolor="k")  # fmt: skip
axes[1].set_title("learned space: test digits and prototypes")
fig.tight_layout()

# %%
# Certified robust accuracy in the input space
# --------------------------------------------
# DeepCBC's radius is the learned-space radius divided by the projection's spectral
# norm (``lipschitz_``), so it holds for perturbations of the raw features.
radii = np.linspace(0, 2, 41)
fig, ax = plt.subplots(figsize=(5, 3.5))
for name, model in [("DeepCBC", cbc), ("shallow CBC", shallow)]:
    ok = model.predict(d.X_test) == d.y_test
    r = model.certified_radius(d.X_test)
    ax.plot(radii, [(ok & (r >= e)).mean() for e in radii], label=name)
ax.set(xlabel="L2 radius r", ylabel="certified robust accuracy")
ax.legend()
plt.show()
