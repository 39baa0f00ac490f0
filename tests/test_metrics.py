"""Metrics against values computed by hand from a 3-task R matrix."""

import numpy as np
import pytest

from lifelong import metrics

# Row 0 = random init; row i = after task i. Task 1 improves after task 2 (0.85 > 0.8), then is forgotten.
R = np.array(
    [
        [0.10, 0.20, 0.30],
        [0.80, 0.25, 0.35],
        [0.85, 0.90, 0.40],
        [0.50, 0.70, 0.95],
    ]
)


def test_acc_is_the_mean_of_the_last_row():
    assert metrics.acc(R) == pytest.approx((0.5 + 0.7 + 0.95) / 3)


def test_bwt_averages_final_minus_just_learned_over_t_minus_1():
    assert metrics.bwt(R) == pytest.approx(((0.5 - 0.8) + (0.7 - 0.9)) / 2)


def test_gem_code_variants_divide_by_t():
    assert metrics.bwt_gem_code(R) == pytest.approx(((0.5 - 0.8) + (0.7 - 0.9)) / 3)
    assert metrics.fwt_gem_code(R) == pytest.approx(((0.25 - 0.2) + (0.4 - 0.3)) / 3)


def test_fwt_compares_before_learning_with_random_init():
    assert metrics.fwt(R) == pytest.approx(((0.25 - 0.2) + (0.4 - 0.3)) / 2)


def test_forgetting_uses_the_best_earlier_accuracy_not_the_diagonal():
    # task 1: best 0.85 (after task 2) - 0.5; task 2: 0.9 - 0.7
    assert metrics.forgetting(R) == pytest.approx((0.35 + 0.2) / 2)
    assert metrics.forgetting(R) != pytest.approx(-metrics.bwt(R))


def test_average_incremental_accuracy():
    assert metrics.avg_incremental_accuracy(R) == pytest.approx((0.8 + (0.85 + 0.9) / 2 + (0.5 + 0.7 + 0.95) / 3) / 3)


def test_intransigence_against_a_reference():
    ref = [0.9, 0.95, 0.97]
    assert metrics.intransigence(R, ref) == pytest.approx((0.1 + 0.05 + 0.02) / 3)
    with pytest.raises(ValueError):
        metrics.intransigence(R, [0.9])


def test_single_task_has_no_transfer():
    one = np.array([[0.1], [0.9]])
    assert metrics.bwt(one) == 0 and metrics.fwt(one) == 0 and metrics.forgetting(one) == 0
    assert metrics.acc(one) == pytest.approx(0.9)


def test_wrong_shape_is_rejected():
    with pytest.raises(ValueError):
        metrics.acc(np.zeros((3, 3)))


def test_summary_names_only_defined_metrics():
    s = metrics.summary(R, reference=[1, 1, 1])
    assert set(s) <= set(metrics.DEFINITIONS)
    assert s["intransigence"] == pytest.approx(np.mean([1 - 0.8, 1 - 0.9, 1 - 0.95]))
