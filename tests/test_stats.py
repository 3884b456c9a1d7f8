import numpy as np
import pandas as pd
import pytest

from paper_repro import stats


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_data():
    rng = np.random.default_rng(0)
    small, large = rng.normal(5, 1, 10), rng.normal(5, 1, 1000)
    lo_s, hi_s = stats.bootstrap_ci(small)
    lo_l, hi_l = stats.bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert hi_l - lo_l < hi_s - lo_s
    assert lo_l < 5 < hi_l


def test_bootstrap_ci_of_one_value_is_that_value_and_empty_is_an_error():
    assert stats.bootstrap_ci([3.0]) == (3.0, 3.0)
    with pytest.raises(ValueError, match="no values"):
        stats.bootstrap_ci([])


def test_mean_ci_groups():
    df = pd.DataFrame({"method": ["a"] * 4 + ["b"] * 2, "ret": [1, 2, 3, 4, 10, 12]})
    out = stats.mean_ci(df, ["method"], "ret")
    assert list(out["method"]) == ["a", "b"]
    assert list(out["mean"]) == [2.5, 11.0] and list(out["n"]) == [4, 2]
    assert (out["ci_low"] <= out["mean"]).all() and (out["mean"] <= out["ci_high"]).all()
