"""ipscope's tables in the tools people use, unchanged: pyarrow, polars, DuckDB, pycytominer.

Runs `ipscope demo` + `ipscope run` once (binary from $IPSCOPE_BIN, default
target/release/ipscope, else target/debug/ipscope) and checks that every table reads in
pyarrow, polars and DuckDB, that Nuclei joins Image on ImageNumber, and that pycytominer's
aggregate → normalize (mad_robustize against negative controls) → feature_select runs on the
Nuclei table as written.

    python -m venv .venv-tests && .venv-tests/bin/pip install -r tests/python/requirements.txt
    cargo build --release -p ipscope-cli
    .venv-tests/bin/python -m pytest -q tests/python
"""

import os
import subprocess
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
TABLES = ["Image", "Nuclei", "Wells", "Errors"]


def binary() -> str:
    if os.environ.get("IPSCOPE_BIN"):
        return os.environ["IPSCOPE_BIN"]
    for profile in ["release", "debug"]:
        p = ROOT / "target" / profile / "ipscope"
        if p.exists():
            return str(p)
    pytest.skip("build ipscope first (cargo build --release -p ipscope-cli)")


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("demo")
    plate, out = base / "plate", base / "out"
    subprocess.run([binary(), "demo", str(plate), "--sites", "1", "--quiet"], check=True)
    subprocess.run(
        [
            binary(), "run", str(plate), "-o", str(out), "--layout", str(plate / "layout.csv"),
            "--channel", "w1=Hoechst", "--channel", "w2=OCT4", "--quiet",
        ],
        check=True,
    )
    return out


@pytest.mark.parametrize("table", TABLES)
def test_pyarrow_and_polars_read_every_table(run_dir, table):
    path = run_dir / f"{table}.parquet"
    t = pq.read_table(path)
    df = pl.read_parquet(path)
    assert t.num_rows == df.height
    assert t.column_names == df.columns


def test_nuclei_measurements_are_there(run_dir):
    cols = pq.read_schema(run_dir / "Nuclei.parquet").names
    for c in [
        "ImageNumber", "ObjectNumber", "Nuclei_AreaShape_Area", "Nuclei_AreaShape_Perimeter",
        "Nuclei_AreaShape_Solidity", "Nuclei_Location_Center_X",
        "Nuclei_Intensity_MedianIntensity_OCT4", "Nuclei_Intensity_IntegratedIntensity_Hoechst",
    ]:
        assert c in cols, c


def test_duckdb_joins_nuclei_to_image(run_dir):
    con = duckdb.connect()
    n_nuclei = con.execute(f"select count(*) from '{run_dir}/Nuclei.parquet'").fetchone()[0]
    rows = con.execute(
        f"""
        select i.ImageNumber, i.Count_Nuclei, count(n.ObjectNumber) as n
        from '{run_dir}/Image.parquet' i
        left join '{run_dir}/Nuclei.parquet' n using (ImageNumber)
        group by i.ImageNumber, i.Count_Nuclei
        """
    ).fetchall()
    assert sum(r[2] for r in rows) == n_nuclei > 0
    assert all(r[1] == r[2] for r in rows)
    # polars does the same join.
    img = pl.read_parquet(run_dir / "Image.parquet")
    nuc = pl.read_parquet(run_dir / "Nuclei.parquet")
    joined = nuc.join(img, on="ImageNumber", how="inner", suffix="_image")
    assert joined.height == nuc.height


def test_pycytominer_profiles(run_dir):
    from pycytominer import aggregate, feature_select, normalize

    nuc = pq.read_table(run_dir / "Nuclei.parquet").to_pandas()
    features = [c for c in nuc.columns if c.startswith("Nuclei_")]
    meta = [c for c in nuc.columns if c.startswith("Metadata_")]
    profiles = aggregate(
        nuc, strata=["Metadata_Plate", "Metadata_Well"], features=features, operation="median"
    )
    wells = nuc[meta].drop_duplicates("Metadata_Well")
    profiles = profiles.merge(wells, on=["Metadata_Plate", "Metadata_Well"])
    assert len(profiles) == nuc["Metadata_Well"].nunique()
    normalized = normalize(
        profiles,
        features=features,
        meta_features=[c for c in profiles.columns if c.startswith("Metadata_")],
        method="mad_robustize",
        samples="Metadata_Role == 'negative'",
    )
    assert len(normalized) == len(profiles)
    selected = feature_select(
        normalized,
        features=features,
        operation=["variance_threshold", "correlation_threshold", "drop_na_columns"],
    )
    kept = [c for c in selected.columns if c.startswith("Nuclei_")]
    assert 0 < len(kept) <= len(features)


@pytest.mark.parametrize("compression", ["snappy", "gzip", "lz4", "zstd", "none"])
def test_ipscope_reads_parquet_written_by_pyarrow(tmp_path, compression):
    """pandas and pyarrow write snappy by default; users hand those files to `ipscope qc`."""
    import json

    import numpy as np
    import pyarrow as pa

    neg = [100.0, 104.0, 98.0, 101.0, 97.0, 103.0]
    pos = [10.0, 12.0, 9.0, 11.0, 13.0, 8.0]
    table = pa.table({"Role": ["neg"] * 6 + ["pos"] * 6, "Value": neg + pos})
    path = tmp_path / f"controls_{compression}.parquet"
    pq.write_table(table, path, compression=compression)
    out = subprocess.run(
        [binary(), "qc", str(path), "--value", "Value", "--control-col", "Role",
         "--neg", "neg", "--pos", "pos", "--json"],
        check=True, capture_output=True, text=True,
    )
    (row,) = json.loads(out.stdout)
    sn, sp = np.std(neg, ddof=1), np.std(pos, ddof=1)
    z = 1 - 3 * (sn + sp) / abs(np.mean(pos) - np.mean(neg))
    assert row["z_prime"] == pytest.approx(z, rel=1e-12)
