import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from paper_repro import stats


def percentile_interval(means: np.ndarray, level: float = 95.0) -> np.ndarray:
    tail = (100 - level) / 2
    return np.percentile(means, [tail, 100 - tail])


def test_with_one_task_it_is_scipys_percentile_bootstrap_over_seeds():
    seeds = np.random.default_rng(0).normal(100, 20, 8)
    mean, low, high = stats.bootstrap_ci(seeds[:, None], resamples=20_000, seed=1)
    ref = scipy_stats.bootstrap((seeds,), np.mean, n_resamples=20_000, method="percentile", rng=2).confidence_interval
    assert mean == pytest.approx(seeds.mean())
    assert [low, high] == pytest.approx([ref.low, ref.high], abs=0.05 * (ref.high - ref.low))  # Monte-Carlo error


def test_interval_brackets_the_mean_and_narrows_with_more_seeds():
    rng = np.random.default_rng(0)
    widths = []
    for n_seeds in (3, 30):
        scores = rng.normal(5, 1, (n_seeds, 4))
        mean, low, high = stats.bootstrap_ci(scores)
        assert low < mean < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2


def test_resamples_seeds_as_wholes_and_tasks():
    """A strong seed effect (each seed's model is better or worse on every task): the interval is the
    two-way bootstrap of seeds (whole rows) and tasks (columns), much wider than resampling seed × task
    values as if independent (the old ``mean_ci``) or seeds independently within each task (rliable's
    ``StratifiedBootstrap``, made for runs that each train on one task)."""
    rng = np.random.default_rng(0)
    n_seeds, n_tasks, draws = 5, 20, 20_000
    scores = rng.normal(0, 50, (n_seeds, 1)) + rng.normal(0, 5, (1, n_tasks)) + rng.normal(0, 5, (n_seeds, n_tasks))
    mean, low, high = stats.bootstrap_ci(scores, resamples=draws)

    two_way = np.array([scores[rng.integers(n_seeds, size=n_seeds)][:, rng.integers(n_tasks, size=n_tasks)].mean()
                        for _ in range(draws)])  # the definition, one resample at a time
    assert [low, high] == pytest.approx(percentile_interval(two_way), abs=0.05 * (high - low))

    independent_rows = rng.choice(scores.ravel(), size=(draws, scores.size)).mean(axis=1)
    within_tasks = scores[rng.integers(n_seeds, size=(draws, n_seeds, n_tasks)), np.arange(n_tasks)]
    for narrow in (independent_rows, within_tasks.mean(axis=(1, 2))):
        old_low, old_high = percentile_interval(narrow)
        assert old_high - old_low < (high - low) / 2


def test_two_seeds_still_see_the_task_spread():
    """With 2 seeds a seed-only bootstrap has 3 distinct resample means; resampling the tasks too
    gives an interval that reflects how much the tasks differ."""
    scores = np.array([[0.0, 10.0, 20.0, 30.0], [1.0, 11.0, 21.0, 31.0]])
    mean, low, high = stats.bootstrap_ci(scores, resamples=5000)
    assert low < mean - 5 and high > mean + 5  # a seed-only bootstrap gives [15, 16]


def test_with_one_seed_it_resamples_the_tasks():
    tasks = np.array([[1.0, 4.0, 2.0, 8.0, 5.0]])
    mean, low, high = stats.bootstrap_ci(tasks, resamples=20_000)
    ref = scipy_stats.bootstrap((tasks[0],), np.mean, n_resamples=20_000, method="percentile",
                                rng=3).confidence_interval
    assert mean == 4.0 and [low, high] == pytest.approx([ref.low, ref.high], abs=0.05 * (ref.high - ref.low))
    assert stats.bootstrap_ci([[3.0]]) == (3.0, 3.0, 3.0)


def test_missing_or_empty_scores_are_an_error():
    with pytest.raises(ValueError, match="missing scores"):
        stats.bootstrap_ci([[1.0, np.nan], [2.0, 3.0]])
    with pytest.raises(ValueError, match="seeds × tasks"):
        stats.bootstrap_ci(np.empty((0, 3)))


def test_seeds_and_aggregate_rows():
    df = pd.DataFrame({"method": ["a"] * 4 + ["b"] * 2, "seed": [0, 0, 1, 1, 0, 0], "task_id": [0, 1, 0, 1, 0, 1],
                       "ret": [1.0, 3.0, 5.0, 7.0, 10.0, 12.0], "env_steps": [100, 100, 120, 120, 50, 50]})
    out = stats.seeds_and_aggregate(df, ["method"], "ret", carry=["env_steps"])
    seeds, aggregate = out[out.kind == "seed"], out[out.kind == "aggregate"].set_index("method")
    assert seeds[["method", "seed", "mean", "env_steps"]].values.tolist() == [["a", 0, 2.0, 100], ["a", 1, 6.0, 120],
                                                                              ["b", 0, 11.0, 50]]
    assert aggregate["mean"].tolist() == [4.0, 11.0] and aggregate["env_steps"].tolist() == [110, 50]
    assert aggregate["n_seeds"].tolist() == [2, 1] and aggregate["n_tasks"].tolist() == [2, 2]
    # seeds and tasks resampled: from the lowest single score to the highest, at least the seeds' means
    assert 1.0 <= aggregate.loc["a", "ci_low"] <= 2.0 and 6.0 <= aggregate.loc["a", "ci_high"] <= 7.0
    assert aggregate["seed"].isna().all() and seeds[["ci_low", "ci_high"]].isna().all().all()


def test_seeds_and_aggregate_names_the_group_of_a_duplicate_or_missing_score():
    df = pd.DataFrame({"method": ["a"] * 3, "seed": [0, 0, 1], "task_id": [0, 1, 0], "ret": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="method=a: 'ret' missing"):
        stats.seeds_and_aggregate(df, ["method"], "ret")
    with pytest.raises(ValueError, match="method=a: more than one 'ret'"):
        stats.seeds_and_aggregate(df.assign(task_id=0), ["method"], "ret")
