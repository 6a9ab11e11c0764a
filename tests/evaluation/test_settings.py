"""Tests of robust_dae_tf.evaluation.settings: the evaluation flags become the attack config."""

import pytest

from robust_dae_tf.errors import ConfigError
from robust_dae_tf.evaluation.settings import EvaluationSettings, check_request, check_settings


def test_ensemble_flags_reach_the_attack_config():
    _, attack, classifier = check_settings(EvaluationSettings(
        attack_method="ensemble", attack_gradient_evaluations=120,
        attack_ensemble_members=["apgd_geometry", "apgd_towards"]))
    assert attack.method == "ensemble" and attack.gradient_evaluations == 120
    assert attack.ensemble_members == ("apgd_geometry", "apgd_towards")
    assert classifier.attack == attack  # Table 3's attack uses the same config
    _, default, _ = check_settings(EvaluationSettings())
    assert default.gradient_evaluations is None and default.ensemble_members is None


@pytest.mark.parametrize("fields, words", [
    ({"attack_method": "ensemble", "attack_ensemble_members": ["apgd", "fab"]}, "unknown: fab"),
    ({"attack_ensemble_members": ["apgd"]}, "'ensemble' only"),
    ({"attack_method": "ensemble", "attack_ensemble_members": ["apgd_geometry"], "attack_gradient_evaluations": 35},
     "at least 36"),
    ({"attack_method": "apgd", "attack_gradient_evaluations": 0}, ">= 1"),
])
def test_bad_ensemble_settings_are_one_config_error(fields, words):
    with pytest.raises(ConfigError, match=words):
        check_settings(EvaluationSettings(**fields))


def test_local_gain_without_the_attacks_is_one_config_error():
    with pytest.raises(ConfigError, match="--local_gain is measured at the attacked images; drop --skip_robustness"):
        check_request(EvaluationSettings(local_gain=True, skip_robustness=True))
    assert check_request(EvaluationSettings(local_gain=True)) == ("strong",)
