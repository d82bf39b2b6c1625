"""The blend of member models (``blend``) on synthetic data with known answers."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from tests.forecast.test_forecast_models import ARX_FULL, decade_basin, linear_basin, problem, scramble_from
from watermon.forecast.base import MODELS
from watermon.forecast.hindcast import hindcast, hindcast_many
from watermon.forecast.models import Blend
from watermon.forecast.models.blend import combine, fit_weights, parse_members, select_blend, simplex_lstsq

ARX_SMALL = {"predictors": ["flow:1", "temperature:1"], "error_correction": False}
MEMBERS = [{"model": "arx", "options": ARX_FULL}, {"model": "arx", "options": ARX_SMALL}, "regression"]


def test_simplex_least_squares() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (400, 3))
    b = a @ np.array([0.2, 0.5, 0.3]) + rng.normal(0, 0.01, 400)
    w = simplex_lstsq(a, b)
    assert np.allclose(w, [0.2, 0.5, 0.3], atol=0.01) and abs(w.sum() - 1) < 1e-12
    # the unconstrained optimum (-0.5, 1.5) is outside: the constrained one is on the edge
    b = a @ np.array([-0.5, 1.5, 0.0])
    w = simplex_lstsq(a, b)
    assert (w >= 0).all() and abs(w.sum() - 1) < 1e-12 and w[1] > 0.9
    assert simplex_lstsq(a[:, :1], b).tolist() == [1.0]


def test_weights_and_combination() -> None:
    rng = np.random.default_rng(1)
    obs = rng.normal(100, 20, 500)
    f = np.stack([obs + rng.normal(0, 1, 500), obs + rng.normal(0, 2, 500)])
    w, n = fit_weights(f, obs, "inverse_variance", 30)
    assert n == 500 and np.allclose(w, [0.8, 0.2], atol=0.05)
    f[1, :10] = np.nan
    assert fit_weights(f, obs, "equal", 30)[0].tolist() == [0.5, 0.5]
    w, n = fit_weights(f[:, :40], obs[:40], "nnls", 31)  # 30 complete cases: too few
    assert n == 30 and w.tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match="weights"):
        fit_weights(f, obs, "median", 30)
    # a member without a forecast is left out and the other weights rescaled
    g = np.array([[1.0, 1.0, np.nan], [3.0, np.nan, np.nan]])
    out = combine(g, np.array([0.25, 0.75])[:, None])
    assert out[0] == pytest.approx(2.5) and out[1] == 1.0 and np.isnan(out[2])
    out = combine(np.array([[1.0, 1.0], [3.0, np.nan], [5.0, 2.0]]), np.array([0.0, 1.0, 0.0])[:, None])
    assert out.tolist() == [3.0, 1.5]  # only members of weight 0 left: their mean


def test_registry_and_options() -> None:
    assert MODELS["blend"] is Blend
    assert parse_members(MEMBERS)[2] == ("regression", {})
    assert parse_members([("arx", None)]) == (("arx", {}),)
    with pytest.raises(TypeError):
        Blend(unknown=1)
    ds = decade_basin(3)
    t = np.datetime64("1972-01-01")
    for members, match in (([], "no members"), (["blend"], "cannot be a blend"), (["nope"], "unknown member"),
                           ([{"model": "arx", "option": {}}], "model: NAME"), ("arx", "a list")):
        with pytest.raises(ValueError, match=match):
            Blend(members=members).fit(ds, problem(), t)
    with pytest.raises(ValueError, match="weights"):
        Blend(members=["regression"], weights="median").fit(ds, problem(), t)
    with pytest.raises(ValueError, match="unknown options"):
        Blend().fit(ds, problem(options={"ridge": 1}), t)


def test_blend_of_one_model_is_that_model() -> None:
    ds = decade_basin(20)
    pr = problem("D", upstream=("A", "B"), meteo=("M",))
    arx = hindcast("arx", ds, replace(pr, options=ARX_FULL), "1985-01-01", quantiles=False)
    for members in ([{"model": "arx", "options": ARX_FULL}], [{"model": "arx", "options": ARX_FULL}] * 2):
        b = hindcast("blend", ds, replace(pr, options={"members": members}), "1985-01-01",
                     quantiles=False)
        assert np.allclose(b.forecast.values, arx.forecast.values, rtol=1e-8, equal_nan=True)  # centring differs


def test_weights_favour_the_better_member() -> None:
    ds, _ = linear_basin(60)
    pr = problem("Q", upstream=("U",), meteo=("M",),
                 options={"members": [{"model": "arx", "options": {"predictors": ["flow:1", "upstream:1",
                                                                                  "precipitation:1"]}},
                                      "climatology", "persistence"], "years": 20})
    m = Blend().fit(ds, pr, np.datetime64("2000-01-01"))
    p = m.params()
    w = np.array([x["weight"] for x in p["members"]])  # (member, lead)
    # lead 1 is the law itself; further ahead climatology shares in (the law's inputs are noise)
    assert w[0, 0] > 0.95 and (w.argmax(axis=0) == 0).all() and np.allclose(w.sum(axis=0), 1) and (w >= 0).all()
    assert p["cases"] == [720, 719, 718]  # 20 years x 36 decades, the last targets of 1999 in 2000 left out
    json.dumps(p)
    fc = m.predict(ds, pr, ds.time.values[[1800, 1900]])
    assert fc.dims == ("issue_time", "lead") and np.isfinite(fc.values).all() and fc.attrs["model"] == "blend"


def test_vectorised_hindcast_equals_the_refit_loop() -> None:
    ds = decade_basin(22)
    pr = problem("D", upstream=("A", "B"), meteo=("M",))
    for weights in ("nnls", "inverse_variance"):
        ps = [replace(pr, options={"members": MEMBERS, "weights": weights, "years": 8})]
        fast = hindcast_many("blend", ds, ps, "1988-01-01", quantiles=False)
        slow = hindcast_many("blend", ds, ps, "1988-01-01", quantiles=False, fast=False)
        assert np.isfinite(fast.forecast.values).mean() > 0.99
        assert np.allclose(fast.forecast.values, slow.forecast.values, rtol=1e-8, atol=1e-7, equal_nan=True)
        assert fast.params["weights"] == weights and len(fast.params["members"]) == 3


def test_no_look_ahead() -> None:
    ds = decade_basin(16)
    pr = problem("D", upstream=("A", "B"), meteo=("M",), options={"members": MEMBERS, "years": 5})
    t0 = ds.time.values[430]
    issues = ds.time.values[[430]]
    base = Blend().fit(ds, pr, t0).predict(ds, pr, issues).values
    late = scramble_from(ds, t0)
    assert np.isfinite(base).all()
    assert np.array_equal(base, Blend().fit(late, pr, t0).predict(late, pr, issues).values)
    cut = np.datetime64("1983-05-11")
    h1 = hindcast("blend", ds, pr, "1982-01-01", calibration_years=3)
    h2 = hindcast("blend", scramble_from(ds, cut), pr, "1982-01-01", calibration_years=3)
    before = h1.forecast.issue_time.values < cut
    assert before.sum() > 40
    assert np.array_equal(h1.forecast.values[before], h2.forecast.values[before])
    assert np.array_equal(h1.quantiles.values[before], h2.quantiles.values[before])


def test_selection_reads_nothing_after_until() -> None:
    ds = decade_basin(30)
    pr = problem("D", upstream=("A", "B"), meteo=("M",))
    members = {"full": {"model": "arx", "options": ARX_FULL}, "small": {"model": "arx", "options": ARX_SMALL},
               "regression": "regression"}
    kw = {"weights": ("nnls", "equal"), "years": (5, 10)}
    a = select_blend(ds, pr, "1995-01-01", "1988-01-01", members, **kw)
    b = select_blend(scramble_from(ds, np.datetime64("1995-01-01")), pr, "1995-01-01", "1988-01-01", members, **kw)
    assert a.options == b.options and a.table == b.table
    assert len(a.table) == 3 + 4 * 3  # three members alone; 4 sets x (nnls 5, nnls 10, equal)
    assert a.options["members"][0]["model"] == "arx" and a.score == min(s for lbl, s in a.table if ":" in lbl)
    assert a.best == a.table[0][0]


def test_sparse_issue_times_get_the_weights_of_the_refit() -> None:
    ds = decade_basin(18)
    pr = problem("D", upstream=("A", "B"), meteo=("M",), options={"members": MEMBERS, "years": 6})
    issues = ds.time.values[[470, 490, 560, 600]]  # 1983, 1985 and 1986
    fast = Blend().hindcast_many(ds, [pr], issues)[0]
    for i, t in enumerate(issues):
        until = np.datetime64(str(t)[:4] + "-01-01", "ns")
        slow = Blend().fit(ds, pr, until).predict(ds, pr, issues[[i]]).values[0]
        assert np.allclose(fast[i], slow, rtol=1e-9)
