"""Reference profiles, normalisations, feature selections (pycytominer) and average precision /
mAP (copairs) for crates/ipscope-stats/tests/stats/profiles.rs.

Run from the repository root:

    IPSCOPE_DATA=../shared/data .venv/bin/python testdata/reference/profiles/make_reference.py

Inputs are generated here with a seeded NumPy RNG (written as CSV with 17 significant digits, so
Rust reads exactly the numbers pycytominer saw). The BBBC021 part runs only when
$IPSCOPE_DATA/bbbc021_platemap_moa_profiles exists.
"""

import json
import os
import pathlib

import copairs
import numpy as np
import pandas as pd
import pycytominer
from copairs import map as cmap
from pycytominer import aggregate, feature_select, normalize

HERE = pathlib.Path(__file__).resolve().parent
FMT = "%.17g"
NULL_SIZE = 10000
SEED = 0


def objects_table():
    """A per-object table of two plates; each well has a genotype and a compound."""
    rng = np.random.default_rng(20260512)
    rows = []
    wells = [f"{r}{c:02d}" for r in "AB" for c in range(1, 9)]
    for plate in ["P1", "P2"]:
        for i, well in enumerate(wells):
            line = "disease" if well[0] == "A" else "control"
            compound = "DMSO" if int(well[1:]) <= 3 else f"C{(int(well[1:]) - 4) % 5}"
            n = 8 + (i % 5)
            shift = (0.0 if line == "disease" else 1.0) + (0.3 if plate == "P2" else 0.0)
            for obj in range(n):
                area = rng.normal(300 + 60 * shift, 40)
                row = {
                    "Metadata_Plate": plate,
                    "Metadata_Well": well,
                    "Metadata_CellLine": line,
                    "Metadata_Compound": compound,
                    "ObjectNumber": obj + 1,
                    "Nuclei_AreaShape_Area": area,
                    # almost a copy of the area: removed by the correlation threshold
                    "Nuclei_AreaShape_Perimeter": 2 * np.sqrt(np.pi * area) + rng.normal(0, 0.5),
                    "Nuclei_Intensity_MeanIntensity_DNA": rng.gamma(4 + shift, 0.05),
                    "Nuclei_Intensity_MeanIntensity_OCT4": rng.normal(0.2, 0.05) + 0.05 * shift,
                    "Cells_AreaShape_Eccentricity": rng.beta(2, 5),
                    "Cells_Intensity_StdIntensity_OCT4": rng.lognormal(-3, 0.4),
                    # a few missing values: kept by drop_na_columns at 5 % (after aggregation)
                    "Cytoplasm_Texture_Contrast_OCT4": (
                        np.nan if rng.random() < 0.04 else rng.normal(1.0, 0.2)
                    ),
                    # mostly missing: dropped by drop_na_columns
                    "Cytoplasm_Granularity_1_OCT4": (
                        np.nan if rng.random() < 0.7 else rng.normal(5.0, 1.0)
                    ),
                    # nearly constant: dropped by variance_threshold
                    "Nuclei_Neighbors_NumberOfNeighbors_Adjacent": 2.0,
                    # on pycytominer's default blocklist
                    "Nuclei_Correlation_Manders_AGP_DNA": rng.random(),
                }
                rows.append(row)
    return pd.DataFrame(rows)


def profile_part(out):
    objects = objects_table()
    objects.to_csv(HERE / "objects.csv", index=False, float_format=FMT)
    strata = ["Metadata_Plate", "Metadata_Well", "Metadata_CellLine", "Metadata_Compound"]
    for op in ["median", "mean"]:
        agg = aggregate(objects, strata=strata, features="infer", operation=op)
        agg.to_csv(HERE / f"aggregate_{op}.csv", index=False, float_format=FMT)
    wells = aggregate(objects, strata=strata, features="infer", operation="median")
    # one plate constant in one feature to exercise the zero-scale rules
    reference = "Metadata_CellLine == 'disease' and Metadata_Compound == 'DMSO'"
    for method in ["standardize", "robustize", "mad_robustize"]:
        parts = []
        for _, plate in wells.groupby("Metadata_Plate", sort=True):
            parts.append(normalize(plate, method=method, samples=reference))
        pd.concat(parts).to_csv(HERE / f"normalize_{method}.csv", index=False, float_format=FMT)
    normalized = pd.concat(
        [
            normalize(plate, method="mad_robustize", samples=reference)
            for _, plate in wells.groupby("Metadata_Plate", sort=True)
        ]
    )
    ops = ["drop_na_columns", "variance_threshold", "correlation_threshold", "blocklist"]
    selected = feature_select(normalized, operation=ops)
    selected.to_csv(HERE / "feature_select.csv", index=False, float_format=FMT)
    # variance_threshold on the object table: a column with two values of very unequal counts
    obj_sel = feature_select(objects, operation=["variance_threshold"])
    out["feature_select_objects_variance_kept"] = [
        c for c in obj_sel.columns if c in set(objects.columns)
    ]
    out["feature_select_ops"] = ops


def ap_frame(meta, feats, pos_sameby, pos_diffby, neg_sameby, neg_diffby):
    ap = cmap.average_precision(
        meta, feats, pos_sameby, pos_diffby, neg_sameby, neg_diffby, progress_bar=False
    )
    return ap


def map_frame(ap, sameby):
    return cmap.mean_average_precision(
        ap, sameby, null_size=NULL_SIZE, threshold=0.05, seed=SEED, progress_bar=False
    )


def similarity_part(out):
    """Generated well profiles: 6 compounds x 4 replicates, 16 vehicle wells, 12 features."""
    rng = np.random.default_rng(77)
    rows, feats = [], []
    effects = {f"C{i}": rng.normal(0, 1, 12) * s for i, s in enumerate([0, 0.3, 0.6, 1, 1.5, 3])}
    for plate in ["P1", "P2"]:
        for k in range(8):
            rows.append({"Metadata_Plate": plate, "Metadata_Compound": "DMSO"})
            feats.append(rng.normal(0, 1, 12))
        for name, eff in effects.items():
            for k in range(2):
                rows.append({"Metadata_Plate": plate, "Metadata_Compound": name})
                feats.append(eff + rng.normal(0, 1, 12))
    meta = pd.DataFrame(rows)
    feats = np.array(feats)
    table = meta.copy()
    for j in range(feats.shape[1]):
        table[f"Cells_Feature_{j:02d}"] = feats[:, j]
    table.to_csv(HERE / "similarity_profiles.csv", index=False, float_format=FMT)

    # Ledoit-Wolf shrunk covariance of the same profiles (used to whiten the rescue axis)
    from sklearn.covariance import ledoit_wolf

    cov, shrink = ledoit_wolf(feats)
    out["ledoit_wolf_shrinkage"] = float(shrink)
    out["ledoit_wolf_covariance"] = cov.tolist()
    import sklearn

    out["sklearn"] = sklearn.__version__

    # replicate retrieval: positives = same compound (vehicle excluded), negatives = other compound
    keep = meta["Metadata_Compound"] != "DMSO"
    rep = ap_frame(
        meta[keep].reset_index(drop=True), feats[keep.values],
        ["Metadata_Compound"], [], [], ["Metadata_Compound"],
    )
    rep_map = map_frame(rep, ["Metadata_Compound"])
    rep.to_csv(HERE / "ap_replicates.csv", index=False, float_format=FMT)
    rep_map.drop(columns=["indices"]).to_csv(HERE / "map_replicates.csv", index=False, float_format=FMT)

    # separation from vehicle (copairs' phenotypic activity recipe): each vehicle well its own
    # reference index, so vehicle wells are never positives of each other
    act_meta = copairs.matching.assign_reference_index(
        meta, "Metadata_Compound == 'DMSO'", reference_col="Metadata_Reference_Index"
    )
    act = ap_frame(
        act_meta, feats,
        ["Metadata_Compound", "Metadata_Reference_Index"], [], [],
        ["Metadata_Compound", "Metadata_Reference_Index"],
    )
    act = act[act["Metadata_Compound"] != "DMSO"]
    act_map = map_frame(act, ["Metadata_Compound"])
    act.to_csv(HERE / "ap_vehicle.csv", index=False, float_format=FMT)
    act_map.drop(columns=["indices"]).to_csv(HERE / "map_vehicle.csv", index=False, float_format=FMT)


def bbbc021_part(out):
    data = os.environ.get("IPSCOPE_DATA")
    if not data:
        print("IPSCOPE_DATA not set: BBBC021 part skipped")
        return
    path = pathlib.Path(data) / "bbbc021_platemap_moa_profiles" / "BBBC021_feature_selected_mad_robustize.csv"
    if not path.exists():
        print(f"{path} absent: BBBC021 part skipped")
        return
    df = pd.read_csv(path)
    df = df[df["Metadata_moa"] != "DMSO"].reset_index(drop=True)
    fcols = [c for c in df.columns if not c.startswith("Metadata_")]
    meta = df[["Metadata_Plate", "Metadata_Well", "Metadata_Compound", "Metadata_Concentration", "Metadata_moa"]]
    feats = df[fcols].to_numpy(dtype=float)
    ap = ap_frame(meta, feats, ["Metadata_moa"], ["Metadata_Compound"], [], ["Metadata_moa"])
    moa_map = map_frame(ap, ["Metadata_moa"])
    ap[["Metadata_Plate", "Metadata_Well", "Metadata_Compound", "Metadata_moa",
        "average_precision", "n_pos_pairs", "n_total_pairs"]].to_csv(
        HERE / "bbbc021_ap_moa.csv", index=False, float_format=FMT)
    moa_map.drop(columns=["indices"]).to_csv(HERE / "bbbc021_map_moa.csv", index=False, float_format=FMT)
    out["bbbc021_mean_ap"] = float(np.nanmean(ap["average_precision"]))

    # 1-NN MOA accuracy, not-same-compound (Ljosa et al. 2013), cosine, well level
    x = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    sim = x @ x.T
    comp = meta["Metadata_Compound"].to_numpy()
    moa = meta["Metadata_moa"].to_numpy()
    hits = 0
    for i in range(len(df)):
        s = np.where(comp == comp[i], -np.inf, sim[i])
        hits += moa[int(np.argmax(s))] == moa[i]
    out["bbbc021_nsc_1nn_accuracy_wells"] = hits / len(df)
    out["bbbc021_profiles"] = int(len(df))


def main():
    out = {
        "pycytominer": pycytominer.__about__.__version__,
        "copairs": copairs.__version__ if hasattr(copairs, "__version__") else "0.5.5",
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "null_size": NULL_SIZE,
        "seed": SEED,
    }
    profile_part(out)
    similarity_part(out)
    bbbc021_part(out)
    (HERE / "reference.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
