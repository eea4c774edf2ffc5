"""A dataset plugin: three Gaussian blobs in 5 dimensions, fixed seed (no download)."""

from sklearn.datasets import make_blobs


def blobs():
    X, y = make_blobs(n_samples=150, n_features=5, centers=3, cluster_std=3.0, random_state=7)
    return X, y, {"description": "three Gaussian blobs (make_blobs, random_state=7)"}
