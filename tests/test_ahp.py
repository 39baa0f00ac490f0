"""Taskonomy's normalisation (lifelong.studies.ahp): win rates → W' = W / W^T → principal eigenvector,
against eigenvectors computed by hand."""

import numpy as np
import pytest

from lifelong.studies import ahp


def test_win_rate_counts_ties_half():
    a, b = [1.0, 2.0, 3.0], [1.0, 3.0, 2.0]  # a wins the second, ties the first, loses the third
    assert ahp.win_rate(a, b) == pytest.approx(1 / 3 + 0.5 * 1 / 3)
    assert ahp.win_rate(a, b) + ahp.win_rate(b, a) == pytest.approx(1.0)


def test_consistent_win_matrix_gives_the_ratio_scale_by_hand():
    # Sources with true strengths 4 : 2 : 1. Win rates w_ij = v_i / (v_i + v_j) make w_ij / w_ji = v_i / v_j,
    # a consistent ratio matrix whose principal eigenvector is v itself (eigenvalue n = 3).
    W = np.array([[0.5, 2 / 3, 4 / 5], [1 / 3, 0.5, 2 / 3], [1 / 5, 1 / 3, 0.5]])
    np.testing.assert_allclose(ahp.ratios(W), [[1, 2, 4], [1 / 2, 1, 2], [1 / 4, 1 / 2, 1]])
    np.testing.assert_allclose(ahp.priorities(W), [4 / 7, 2 / 7, 1 / 7])
    assert ahp.principal(ahp.ratios(W))[0] == pytest.approx(3.0)
    assert ahp.consistency_index(W) == pytest.approx(0.0, abs=1e-12)


def test_inconsistent_three_by_three_matches_the_hand_computation():
    # 0 beats 1 three times to one, 1 beats 2 three times to one, but 0 only ties 2: W' = [[1, 3, 1],
    # [1/3, 1, 3], [1, 1/3, 1]]. For a 3 x 3 reciprocal matrix [[1, a, b], [1/a, 1, c], [1/b, 1/c, 1]] the
    # characteristic equation is (1 - λ)^3 - 3(1 - λ) + r + 1/r = 0 with r = ac/b, so λ_max = 1 + r^(1/3) +
    # r^(-1/3), and (substituting) the eigenvector is the rows' geometric means ((ab)^(1/3), (c/a)^(1/3),
    # (1/(bc))^(1/3)). Here a = 3, b = 1, c = 3, r = 9: v ∝ (3^(1/3), 1, 3^(-1/3)).
    W = np.array([[0.5, 0.75, 0.5], [0.25, 0.5, 0.75], [0.5, 0.25, 0.5]])
    v = np.array([3 ** (1 / 3), 1.0, 3 ** (-1 / 3)])
    np.testing.assert_allclose(ahp.priorities(W), v / v.sum())
    lam = 1 + 9 ** (1 / 3) + 9 ** (-1 / 3)
    assert ahp.principal(ahp.ratios(W))[0] == pytest.approx(lam)
    assert ahp.consistency_index(W) == pytest.approx((lam - 3) / 2)


def test_zeros_are_clipped_as_in_taskonomy():
    # One source wins on every sample: W clipped to [0.001, 0.999] gives w'_01 = 999, a finite ratio;
    # a 2 x 2 reciprocal matrix is always consistent, so v = (999, 1) / 1000.
    W = np.array([[0.5, 1.0], [0.0, 0.5]])
    np.testing.assert_allclose(ahp.priorities(W), [0.999, 0.001])
    assert ahp.priorities(np.array([[0.5]])) == pytest.approx([1.0])  # a target with one source
    assert ahp.priorities(np.full((3, 3), 0.5)) == pytest.approx([1 / 3] * 3)  # all ties: equal shares


def test_a_win_matrix_must_hold_shares():
    with pytest.raises(ValueError, match="shares in"):
        ahp.ratios([[0.5, 1.5], [-0.5, 0.5]])
