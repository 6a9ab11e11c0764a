"""Fixtures of the attack tests: a tiny random MLP autoencoder and images for it."""

import pytest

from tests.attacks.toy_models import MLPModel, make_mlp_images


@pytest.fixture(scope="module")
def mlp():
    return MLPModel()


@pytest.fixture(scope="module")
def mlp_images():
    return make_mlp_images()
