"""A campaign tree (OUT/Metadata_Plate=<id>/…) read as one data set by DuckDB, Polars and pyarrow.

Writes three demo plates, runs them as one campaign with `ipscope run P1 P2 P3 -o OUT`, and
checks that each tool's hive-partitioned read of OUT/*/Nuclei.parquet gives every plate's
rows, with the partition key equal to the Metadata_Plate column in the files, and that the
per-plate row counts equal those of each partition read on its own.
"""

import glob
import subprocess
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from test_tables import binary

PLATES = ["P1", "P2", "P3"]


@pytest.fixture(scope="session")
def campaign(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("campaign")
    dirs = []
    for i, plate in enumerate(PLATES, start=1):
        d = base / "plates" / plate
        subprocess.run(
            [binary(), "demo", str(d), "--seed", str(i), "--plate-id", plate, "--sites", "1",
             "--size", "96", "--quiet"],
            check=True,
        )
        dirs.append(str(d))
    out = base / "out"
    subprocess.run(
        [binary(), "run", *dirs, "-o", str(out), "--layout", str(Path(dirs[0]) / "layout.csv"),
         "--channel", "w1=DNA", "--channel", "w2=OCT4", "--quiet"],
        check=True,
    )
    return out


def own_counts(out: Path, table: str) -> dict:
    return {p: pq.read_metadata(out / f"Metadata_Plate={p}" / f"{table}.parquet").num_rows
            for p in PLATES}


@pytest.mark.parametrize("table", ["Nuclei", "Image", "Wells"])
def test_duckdb_reads_the_campaign_as_one_dataset(campaign, table):
    rows = duckdb.sql(
        f"SELECT Metadata_Plate, count(*) FROM read_parquet('{campaign}/*/{table}.parquet', "
        "hive_partitioning = true) GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert dict(rows) == own_counts(campaign, table)


@pytest.mark.parametrize("table", ["Nuclei", "Image", "Wells"])
def test_polars_reads_the_campaign_as_one_dataset(campaign, table):
    df = pl.scan_parquet(f"{campaign}/*/{table}.parquet", hive_partitioning=True).collect()
    counts = dict(df.group_by("Metadata_Plate").len().iter_rows())
    assert counts == own_counts(campaign, table)
    assert df.columns.count("Metadata_Plate") == 1


@pytest.mark.parametrize("table", ["Nuclei", "Image", "Wells"])
def test_pyarrow_dataset_reads_the_campaign_with_hive_partitioning(campaign, table):
    files = sorted(glob.glob(f"{campaign}/Metadata_Plate=*/{table}.parquet"))
    dataset = ds.dataset(files, format="parquet", partitioning="hive",
                         partition_base_dir=str(campaign))
    t = dataset.to_table()
    counts = {}
    for plate in t.column("Metadata_Plate").to_pylist():
        counts[plate] = counts.get(plate, 0) + 1
    assert counts == own_counts(campaign, table)
    # The partition key is the path; the rows say the same plate.
    for f in dataset.get_fragments():
        plate = Path(f.path).parent.name.split("=", 1)[1]
        col = f.to_table(columns=["Metadata_Plate"]).column("Metadata_Plate").to_pylist()
        assert set(col) == {plate}


def test_campaign_wells_equal_the_hive_read(campaign):
    hive = duckdb.sql(
        f"SELECT * EXCLUDE (Metadata_Plate), Metadata_Plate FROM "
        f"read_parquet('{campaign}/*/Wells.parquet', hive_partitioning = true) "
        "ORDER BY Metadata_Plate, Metadata_Well"
    ).fetchall()
    flat = duckdb.sql(
        f"SELECT * EXCLUDE (Metadata_Plate), Metadata_Plate FROM "
        f"read_parquet('{campaign}/CampaignWells.parquet') ORDER BY Metadata_Plate, Metadata_Well"
    ).fetchall()
    assert len(hive) == len(flat) > 0
    assert hive == flat
