"""Statistical checks shared by the planner tests."""
import math

import numpy as np

Z = 5.0  # two-sided normal tail 5.7e-7 per check: with ~100 checks a false alarm is ~1e-4 (and the seed is fixed)


def chi2_bound(df: int, z: float = Z) -> float:
    """Upper chi-square quantile via Wilson-Hilferty: df * (1 - 2/(9df) + z*sqrt(2/(9df)))**3."""
    v = 2 / (9 * df)
    return df * (1 - v + z * math.sqrt(v)) ** 3


def check_counts(counts: np.ndarray, p: np.ndarray, n: int) -> None:
    """Counts of a multinomial(n, p): each within Z standard deviations, and chi-square within its bound."""
    assert counts.sum() == n
    assert (counts[p == 0] == 0).all()
    pos = p > 0
    expected = n * p[pos]
    sd = np.sqrt(n * p[pos] * (1 - p[pos]))
    assert (np.abs(counts[pos] - expected) <= Z * sd + 1e-9).all(), (counts, expected)
    chi2 = float(((counts[pos] - expected) ** 2 / expected).sum())
    assert chi2 <= chi2_bound(int(pos.sum()) - 1), chi2
