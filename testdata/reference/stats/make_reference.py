#!/usr/bin/env python3
"""Reference values for ipscope-stats, computed with NumPy/SciPy (see README.md here).

Writes, next to this script:
- plate_qc.csv: a small 8x12 plate (well, role, value) with a row trend and an edge effect;
- reference.json: for that plate, per-control statistics, Z', robust Z', SSMD, S/B, signal
  window, CVs, and per-well NPI, z, robust z and B-score (R's medpolish algorithm written out
  in NumPy, residuals / (1.4826 * MAD)); and least-squares dose-response fits of drc data sets
  (scipy.optimize.least_squares, multi-start) with Jacobian standard errors and ED10/50/90.

Usage: IPSCOPE_DATA=../shared/data .venv/bin/python testdata/reference/stats/make_reference.py
"""
import csv
import json
import os
from pathlib import Path

import numpy as np
from scipy import optimize, stats

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("IPSCOPE_DATA", HERE.parents[2] / ".." / "shared" / "data"))
MAD = 1.4826


# ---------------------------------------------------------------- plate QC and normalisation
def make_plate():
    rng = np.random.default_rng(20240607)
    rows, cols = 8, 12
    out = []
    for r in range(rows):
        for c in range(cols):
            well = f"{chr(65 + r)}{c + 1:02d}"
            if c == 0:
                role, base = "negative", 100.0
            elif c == 11:
                role, base = "positive", 20.0
            else:
                role, base = "treated", 60.0
            v = base + rng.normal(0, 5) + 1.5 * r  # row trend
            if r in (0, rows - 1):
                v += 8.0  # edge rows brighter
            out.append((well, role, round(float(v), 6)))
    return out


def medpolish(x, eps=0.01, maxiter=10):
    """R's stats::medpolish(x, eps, maxiter, na.rm=TRUE), line by line."""
    z = x.copy()
    nr, nc = z.shape
    t = 0.0
    r = np.zeros(nr)
    c = np.zeros(nc)
    oldsum = 0.0
    for _ in range(maxiter):
        rdelta = np.nanmedian(z, axis=1)
        z = z - rdelta[:, None]
        r = r + rdelta
        delta = np.nanmedian(c)
        c = c - delta
        t = t + delta
        cdelta = np.nanmedian(z, axis=0)
        z = z - cdelta[None, :]
        c = c + cdelta
        delta = np.nanmedian(r)
        r = r - delta
        t = t + delta
        newsum = np.nansum(np.abs(z))
        converged = newsum == 0 or abs(newsum - oldsum) < eps * newsum
        if converged:
            break
        oldsum = newsum
    return t, r, c, z


def raw_mad(v):
    v = np.asarray(v, float)
    return float(np.median(np.abs(v - np.median(v))))


def describe(v):
    v = np.asarray(v, float)
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)),
        "median": float(np.median(v)),
        "mad": raw_mad(v),
        "cv": float(100 * v.std(ddof=1) / abs(v.mean())),
    }


def plate_reference(plate):
    vals = np.array([p[2] for p in plate])
    roles = np.array([p[1] for p in plate])
    neg, pos = vals[roles == "negative"], vals[roles == "positive"]
    dn, dp = describe(neg), describe(pos)
    gap = abs(dp["mean"] - dn["mean"])
    hi_sd = dp["sd"] if dp["mean"] >= dn["mean"] else dn["sd"]
    qc = {
        "negative": dn,
        "positive": dp,
        "z_prime": 1 - 3 * (dp["sd"] + dn["sd"]) / gap,
        "robust_z_prime": 1
        - 3 * MAD * (dp["mad"] + dn["mad"]) / abs(dp["median"] - dn["median"]),
        "ssmd": (dp["mean"] - dn["mean"]) / np.sqrt(dp["sd"] ** 2 + dn["sd"] ** 2),
        "signal_to_background": max(dp["mean"], dn["mean"]) / min(dp["mean"], dn["mean"]),
        "signal_window": (gap - 3 * (dp["sd"] + dn["sd"])) / hi_sd,
        "cv_negative": dn["cv"],
        "cv_positive": dp["cv"],
    }
    samples = vals[roles == "treated"]
    mn, mp = neg.mean(), pos.mean()
    grid = vals.reshape(8, 12)
    t, r, c, resid = medpolish(grid)
    bscore = (resid / (MAD * raw_mad(resid.ravel()))).ravel()
    norm = {
        "percent_of_control": list(100 * vals / mn),
        "npi": list(100 * (mn - vals) / (mn - mp)),
        # The normalised percent activation as usually written (x - neg) / (pos - neg).
        "npa": list(100 * (vals - mn) / (mp - mn)),
        "z_score": list((vals - samples.mean()) / samples.std(ddof=1)),
        "robust_z": list((vals - np.median(samples)) / (MAD * raw_mad(samples))),
        "b_score": list(bscore),
        "medpolish_overall": float(t),
        "medpolish_row": list(r),
        "medpolish_col": list(c),
    }
    return qc, norm


# ---------------------------------------------------------------- dose-response (drc models)
def ll4(theta, x):
    b, c, d, e = theta
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        lx = np.log(x)
        t = np.where(x > 0, b * (lx - np.log(e)), -np.inf * np.sign(b))
    with np.errstate(over="ignore"):
        return c + (d - c) / (1 + np.exp(t))


def w14(theta, x):
    b, c, d, e = theta
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        lx = np.log(x)
        t = np.where(x > 0, b * (lx - np.log(e)), -np.inf * np.sign(b))
    with np.errstate(over="ignore"):
        return c + (d - c) * np.exp(-np.exp(t))


def ll3(theta, x):
    b, d, e = theta
    return ll4((b, 0.0, d, e), x)


def fit(model, x, y, names):
    f = {"LL.4": ll4, "W1.4": w14, "LL.3": ll3}[model]
    pos = x[x > 0]
    best = None
    for b0 in (-8, -3, -1, -0.5, 0.5, 1, 3, 8):
        for e0 in np.exp(np.linspace(np.log(pos.min()), np.log(pos.max()), 9)):
            if model == "LL.3":
                start = [b0, y.max(), e0]
            else:
                start = [b0, y.min(), y.max(), e0]
            try:
                r = optimize.least_squares(
                    lambda th: f(th, x) - y,
                    start,
                    method="lm",
                    xtol=1e-15,
                    ftol=1e-15,
                    gtol=1e-15,
                    max_nfev=20000,
                )
            except Exception:
                continue
            th = r.x
            if th[-1] <= 0 or not np.all(np.isfinite(r.fun)):
                continue
            rss = float(r.fun @ r.fun)
            if best is None or rss < best[0]:
                best = (rss, th, r.jac)
    rss, th, jac = best
    if model == "LL.4" and th[1] > th[2]:
        # LL.4 is symmetric under (b, c, d) -> (-b, d, c); report drc's orientation (c < d).
        th = np.array([-th[0], th[2], th[1], th[3]])
        jac = np.column_stack([-jac[:, 0], jac[:, 2], jac[:, 1], jac[:, 3]])
    n, p = len(y), len(th)
    df = n - p
    s2 = rss / df
    cov = s2 * np.linalg.inv(jac.T @ jac)
    se = np.sqrt(np.diag(cov))
    b, e = th[0], th[-1]
    tq = stats.t.ppf(0.975, df)
    eds = {}
    for pct in (10, 50, 90):
        if model == "W1.4":
            k = np.log(-np.log(1 - pct / 100))
        else:
            k = np.log(pct / (100 - pct))
        ed = e * np.exp(k / b)
        g = np.zeros(p)
        g[0] = -ed * k / b**2
        g[-1] = ed / e
        ed_se = float(np.sqrt(g @ cov @ g))
        eds[f"ed{pct}"] = {"estimate": float(ed), "se": ed_se, "lower": float(ed - tq * ed_se), "upper": float(ed + tq * ed_se)}
    return {
        "model": model,
        "params": dict(zip(names, map(float, th))),
        "se": dict(zip(names, map(float, se))),
        "rss": rss,
        "residual_se": float(np.sqrt(s2)),
        "df": int(df),
        **eds,
    }


def joint_relative_potency(groups, reference):
    """drc's drm(y ~ x, curveid = group, fct = LL.4()) and EDcomp(fit, c(50, 50)).

    One least-squares problem over the stacked parameters (b, c, d, e) of every group (drc's
    default: no parameter shared between curves), started from the separate fits. The
    covariance is s^2 (J'J)^-1 of the joint Jacobian with the pooled residual variance
    s^2 = RSS / (N - 4 k) over all k groups (drc's vcov for least squares, Gauss-Newton form).
    EDcomp's ratio ED50(reference) / ED50(group), its delta-method SE from the numerically
    differentiated gradient of the ratio over all 4 k parameters, the 95 % interval
    ratio -/+ t(0.975, N - 4 k) SE (interval = "delta"), and the t-test p-value of ratio = 1.
    """
    names = sorted(groups)
    xs = [groups[g][0] for g in names]
    ys = [groups[g][1] for g in names]
    start = []
    for g in names:
        sep = fit("LL.4", groups[g][0], groups[g][1], ["b", "c", "d", "e"])["params"]
        start += [sep["b"], sep["c"], sep["d"], sep["e"]]

    def resid(th):
        return np.concatenate(
            [ll4(th[4 * k : 4 * k + 4], xs[k]) - ys[k] for k in range(len(names))]
        )

    r = optimize.least_squares(
        resid, np.array(start), method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=50000
    )
    th, jac = r.x, r.jac
    n, p = sum(len(y) for y in ys), len(th)
    df = n - p
    rss = float(r.fun @ r.fun)
    s2 = rss / df
    cov = s2 * np.linalg.inv(jac.T @ jac)
    tq = stats.t.ppf(0.975, df)
    ref = names.index(reference)
    out = {
        "reference": reference,
        "rss": rss,
        "df": int(df),
        "residual_se": float(np.sqrt(s2)),
        "params": {g: dict(zip("bcde", map(float, th[4 * k : 4 * k + 4]))) for k, g in enumerate(names)},
        "ratios": {},
    }

    def ratio(t, k):
        return t[4 * ref + 3] / t[4 * k + 3]  # LL.4: ED50 = e

    for k, g in enumerate(names):
        if k == ref:
            continue
        est = ratio(th, k)
        grad = np.zeros(p)
        for i in range(p):
            h = 1e-6 * max(abs(th[i]), 1.0)
            up, dn = th.copy(), th.copy()
            up[i] += h
            dn[i] -= h
            grad[i] = (ratio(up, k) - ratio(dn, k)) / (2 * h)
        se = float(np.sqrt(grad @ cov @ grad))
        tstat = (est - 1) / se
        out["ratios"][g] = {
            "ratio": float(est),
            "se": se,
            "lower": float(est - tq * se),
            "upper": float(est + tq * se),
            "p_value": float(2 * stats.t.sf(abs(tstat), df)),
        }
    return out


def joint_shared_limits(groups, reference):
    """drc's S.alba example: drm(DryMatter ~ Dose, Herbicide, fct = LL.4(),
    pmodels = data.frame(Herbicide, 1, 1, Herbicide)): slopes b and ED50s e per herbicide,
    lower limit c and upper limit d shared. Least squares over (b_1, b_2, c, d, e_1, e_2)
    from a grid of starts; covariance s^2 (J'J)^-1 with s^2 = RSS / (N - 6); EDcomp's ratio
    ED50(reference) / ED50(group) with its delta-method SE and t interval on N - 6 df.
    """
    names = sorted(groups)
    k = len(names)

    def unpack(th):
        b, c, d, e = th[:k], th[k], th[k + 1], th[k + 2 :]
        return b, c, d, e

    def resid(th):
        b, c, d, e = unpack(th)
        return np.concatenate(
            [ll4((b[i], c, d, e[i]), groups[g][0]) - groups[g][1] for i, g in enumerate(names)]
        )

    best = None
    ys = np.concatenate([groups[g][1] for g in names])
    for b0 in (0.5, 1, 2, 4, 8):
        for scale in (0.3, 1.0, 3.0):
            start = [b0] * k + [ys.min(), ys.max()]
            for g in names:
                x = groups[g][0]
                start.append(scale * np.exp(np.mean(np.log(x[x > 0]))))
            r = optimize.least_squares(
                resid, np.array(start, float), method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=50000
            )
            if np.any(r.x[k + 2 :] <= 0):
                continue
            rss = float(r.fun @ r.fun)
            if best is None or rss < best[0]:
                best = (rss, r.x, r.jac)
    rss, th, jac = best
    n, p = len(ys), len(th)
    df = n - p
    s2 = rss / df
    cov = s2 * np.linalg.inv(jac.T @ jac)
    se = np.sqrt(np.diag(cov))
    tq = stats.t.ppf(0.975, df)
    b, c, d, e = unpack(th)
    ref = names.index(reference)
    out = {
        "reference": reference,
        "rss": rss,
        "df": int(df),
        "residual_se": float(np.sqrt(s2)),
        "shared": {"c": float(c), "d": float(d), "se_c": float(se[k]), "se_d": float(se[k + 1])},
        "params": {g: {"b": float(b[i]), "e": float(e[i]), "se_b": float(se[i]), "se_e": float(se[k + 2 + i])} for i, g in enumerate(names)},
        "ratios": {},
    }
    for i, g in enumerate(names):
        if i == ref:
            continue
        est = e[ref] / e[i]
        grad = np.zeros(p)
        grad[k + 2 + ref] = 1 / e[i]
        grad[k + 2 + i] = -e[ref] / e[i] ** 2
        rse = float(np.sqrt(grad @ cov @ grad))
        out["ratios"][g] = {
            "ratio": float(est),
            "se": rse,
            "lower": float(est - tq * rse),
            "upper": float(est + tq * rse),
            "p_value": float(2 * stats.t.sf(abs((est - 1) / rse), df)),
        }
    return out


def cellhts2_npi(plates):
    """cellHTS2's normalizePlates(method = "NPI") on KcViab plates, its R function
    (R/perPlateScaling.R, cellHTS2 2.x) transcribed line by line:
        NPI = function(a, pos, neg, ...)
            (mean(a[pos], na.rm=TRUE) - a) / (mean(a[pos], na.rm=TRUE) - mean(a[neg], na.rm=TRUE))
    with the screen's Plateconf.txt: B01 = neg, B02 = pos.
    """
    out = {"plates": [], "npi": []}
    for name in plates:
        rows = [line.rstrip("\n").split("\t") for line in open(DATA / "cellhts2_kcviab_hts" / "KcViab" / f"{name}.txt")]
        a = np.array([float(r[2]) for r in rows])
        wells = [r[1] for r in rows]
        pos = np.array([w == "B02" for w in wells])
        neg = np.array([w == "B01" for w in wells])
        npi = (np.nanmean(a[pos]) - a) / (np.nanmean(a[pos]) - np.nanmean(a[neg]))
        out["plates"].append(name)
        out["npi"].extend(map(float, npi))
    return out


def read_csv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def main():
    plate = make_plate()
    with open(HERE / "plate_qc.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["Metadata_Well", "Metadata_Role", "Value"])
        w.writerows(plate)
    qc, norm = plate_reference(plate)

    curves = {}
    drc = DATA / "drc_doseresponse" / "csv"
    rye = read_csv(drc / "ryegrass.csv")
    x = np.array([float(r["conc"]) for r in rye])
    y = np.array([float(r["rootl"]) for r in rye])
    curves["ryegrass_LL.4"] = fit("LL.4", x, y, ["b", "c", "d", "e"])
    curves["ryegrass_W1.4"] = fit("W1.4", x, y, ["b", "c", "d", "e"])
    curves["ryegrass_LL.3"] = fit("LL.3", x, y, ["b", "d", "e"])
    alba = read_csv(drc / "S.alba.csv")
    for herb in ("Glyphosate", "Bentazone"):
        rows = [r for r in alba if r["Herbicide"] == herb]
        x = np.array([float(r["Dose"]) for r in rows])
        y = np.array([float(r["DryMatter"]) for r in rows])
        curves[f"S.alba_{herb}_LL.4"] = fit("LL.4", x, y, ["b", "c", "d", "e"])
    alba_groups = {}
    for herb in ("Glyphosate", "Bentazone"):
        rows = [r for r in alba if r["Herbicide"] == herb]
        alba_groups[herb] = (
            np.array([float(r["Dose"]) for r in rows]),
            np.array([float(r["DryMatter"]) for r in rows]),
        )
    relpot = {
        "S.alba_LL.4_reference_" + ref: joint_relative_potency(alba_groups, ref)
        for ref in ("Bentazone", "Glyphosate")
    }
    relpot["S.alba_LL.4_shared_cd_reference_Glyphosate"] = joint_shared_limits(alba_groups, "Glyphosate")

    out = {
        "generated_by": "testdata/reference/stats/make_reference.py",
        "numpy": np.__version__,
        "scipy": __import__("scipy").__version__,
        "plate_qc": qc,
        "normalize": norm,
        "curves": curves,
        "relative_potency": relpot,
        "cellhts2_kcviab_npi": cellhts2_npi(["FT01-G01", "FT02-G01"]),
    }
    with open(HERE / "reference.json", "w") as fh:
        json.dump(out, fh, indent=1, sort_keys=True)
        fh.write("\n")


if __name__ == "__main__":
    main()
