"""Tests of robust_dae_tf.reporting.sweeps: the Pareto front."""


from robust_dae_tf import reporting


def test_pareto_front_hand_computed_with_ties():
    # (robustness up, fidelity error down)
    values = [
        (0.9, 10.0),   # 0: optimal (most robust)
        (0.8, 5.0),    # 1: optimal
        (0.8, 5.0),    # 2: tie with 1: equal entries do not dominate each other
        (0.7, 6.0),    # 3: dominated by 1
        (0.5, 1.0),    # 4: optimal (best fidelity)
        (0.9, 12.0),   # 5: dominated by 0 (same robustness, worse fidelity)
        (None, 0.1),   # 6: incomplete: never optimal, dominates nothing
        (float("nan"), 0.1),  # 7: likewise
    ]
    assert reporting.pareto_front(values, (True, False)) == [0, 1, 2, 4]
    assert reporting.pareto_front(values, (False, True)) == [3, 4, 5]  # both directions flipped
    assert reporting.pareto_front([(1.0, 1.0)], (True, True)) == [0]
    assert reporting.pareto_front([], (True,)) == []
