"""The attack numbers of fixed seeds, recorded before the attacks became objectives
(robust_dae_tf/attacks.py at c277f66): the same random draws, ops and order must give the
same losses. Recorded on the project's CPU TensorFlow; the tolerance only absorbs float
rounding of another CPU, not a changed seed, start or step."""

import numpy as np
import pytest

from robust_dae_tf import attacks
from robust_dae_tf.attacks import AttackConfig
from tests.attacks.toy_models import MLPModel

# (attack, config, budget) -> per-image losses, sum of the adversarial pixels.
RECORDED = {
    ("latent", "pgd", 0.7): ([0.0025405536871403456, 0.00010283023584634066, 0.22901509702205658,
                              0.0006367752212099731, 0.23195461928844452, 0.0007324364269152284,
                              0.13704878091812134], 200.50284934644878),
    ("max_damage", "pgd", 0.7): ([0.44821897149086, 0.5288897752761841, 0.44585371017456055, 0.5119291543960571,
                                  0.5199596285820007, 0.5367953777313232, 0.49173346161842346], 203.00944108731346),
    ("latent", "pgd_plain", 2.0): ([0.011833946220576763, 0.06829622387886047, 0.026031726971268654,
                                    0.021831966936588287, 0.05685937777161598, 0.01524208765476942,
                                    0.00693898182362318], 209.1434346364258),
    ("max_damage", "pgd_plain", 2.0): ([1.225361943244934, 1.1980093717575073, 1.1319020986557007,
                                        1.1878591775894165, 0.9363334774971008, 1.072116494178772,
                                        1.1844362020492554], 203.8061045104405),
    ("latent", "lbfgsb", 0.7): ([0.0004459786869119853, 0.0017007760470733047, 0.22987951338291168,
                                 0.00290041440166533, 0.23099495470523834, 0.002556259511038661,
                                 0.14789491891860962], 200.4857458899619),
    ("max_damage", "lbfgsb", 0.7): ([0.4470764398574829, 0.5102409720420837, 0.4440231919288635,
                                     0.47269687056541443, 0.5155686736106873, 0.5336495637893677,
                                     0.48175448179244995], 202.56221224099863),
}
CONFIGS = {
    "pgd": AttackConfig(steps=16, restarts=2, exploration_starts=4),
    "pgd_plain": AttackConfig(steps=10, restarts=3, exploration_starts=1, jit_compile=False),
    "lbfgsb": AttackConfig(steps=8, restarts=2, method="lbfgsb"),
}


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(3)
    x = rng.random((7, 8, 8, 1)).astype(np.float32)
    x[:, :, :2] = 0.0
    x[:, :, -1] = 1.0
    return MLPModel(), x, np.roll(x, 1, axis=0)


@pytest.mark.parametrize("kind, config, budget", list(RECORDED))
def test_losses_are_the_recorded_ones(inputs, kind, config, budget):
    model, x, x_t = inputs
    result = attacks.run(kind, model, x, budget, CONFIGS[config], targets=x_t, seed=5)
    losses, pixel_sum = RECORDED[(kind, config, budget)]
    np.testing.assert_allclose(result.loss, losses, rtol=1e-4, atol=1e-6)
    assert float(result.adversarial.astype(np.float64).sum()) == pytest.approx(pixel_sum, rel=1e-6)
