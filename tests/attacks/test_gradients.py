"""attacks.gradients.check_input_gradient through `attacks.run`: a model whose outputs do
not depend on its input is one DataError per attack, for every optimiser; real models pass."""

import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import attacks
from robust_dae_tf.errors import DataError
from tests.attacks.toy_models import MLPModel

TINY = attacks.AttackConfig(steps=2, restarts=1, exploration_starts=1, jit_compile=False)


class ConstantEncoder(MLPModel):
    """encode ignores the images: no gradient path at all (None)."""

    def encode(self, images):
        return tf.ones([tf.shape(images)[0], 4]) * 0.3


class StopGradientEncoder(MLPModel):
    def encode(self, images):
        return tf.stop_gradient(super().encode(images))


class ZeroGradientEncoder(MLPModel):
    """Connected to the images, but with a zero derivative everywhere."""

    def encode(self, images):
        return super().encode(images * 0.0)


@pytest.mark.parametrize("model_class", [ConstantEncoder, StopGradientEncoder, ZeroGradientEncoder])
@pytest.mark.parametrize("method", ["pgd", "lbfgsb"])
@pytest.mark.parametrize("objective", ["latent", "max_damage"])
def test_a_model_without_input_gradient_is_one_clear_error(mlp_images, model_class, method, objective):
    targets = mlp_images[::-1].copy() if objective == "latent" else None
    config = attacks.AttackConfig(steps=2, restarts=1, exploration_starts=1, jit_compile=False, method=method)
    with pytest.raises(DataError, match="not differentiable with respect to its input") as err:
        attacks.run(objective, model_class(), mlp_images, 1.0, config, targets=targets)
    assert objective in str(err.value) and "encode()" in str(err.value)


def test_a_differentiable_model_passes_and_the_check_sees_its_gradient(mlp, mlp_images):
    # Max damage at d = 0 has a zero gradient; the check looks at a point of the ball instead.
    objective = attacks.objective("max_damage")
    reference = objective.reference(mlp, mlp_images, None)
    attacks.check_input_gradient(mlp, objective, mlp_images, reference, 1.0)
    result = attacks.run("max_damage", mlp, mlp_images, 1.0, TINY)
    assert np.all(result.loss > 0)
