"""The marts of a Spark build, exported to the parquet files every reader already uses.

On DuckDB the marts are dbt-duckdb `external` models: each is written straight to `$SHOPRANK_HOME/marts/<name>.parquet`
(or its `location`). On Spark (SHOPRANK_OFFLINE_ENGINE=spark) the same models are tables of Spark's warehouse
(transforms/macros/materializations/external_spark.sql), a folder of part files each. This step copies every
external model's table into the one file its DuckDB twin writes, with the same column types (instants as
UTC-adjusted microseconds), so Feast, training, merchant_growth and the tests read them unchanged.

It reads the warehouse's files with pyarrow rather than through a Spark session: a second JVM costs tens of
seconds on a small machine, and the table folders are plain parquet. In file-name order, which keeps the order
of a mart's final `order by` (Spark writes a sorted result's partitions as part-00000, part-00001, ...).
On a cluster the warehouse sits on the object store: pyarrow reads it there through its filesystem layer, or a
team exports with Spark itself (docs/beyond_one_machine.md).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import typer

from platform_common.settings import Settings, get_settings

app = typer.Typer(add_completion=False, help=__doc__)


class ExportError(Exception):
    """The Spark build's outputs are not where the export looks: one line says what is missing."""


@dataclass(frozen=True)
class Mart:
    name: str
    table_dir: Path
    target: Path


def manifest_path(settings: Settings) -> Path:
    """dbt's manifest of the last build (the Makefile puts DBT_TARGET_PATH under the state folder)."""
    return settings.home_dir / "dbt" / "target" / "manifest.json"


def marts_of(manifest: dict, settings: Settings) -> list[Mart]:
    """Every `external` model of the dbt project: its warehouse folder and the file DuckDB would write."""
    warehouse = settings.spark_dir / "warehouse"
    marts = []
    for node in manifest["nodes"].values():
        config = node.get("config", {})
        if node.get("resource_type") != "model" or config.get("materialized") != "external":
            continue
        name = node.get("alias") or node["name"]
        location = config.get("location")
        target = Path(location) if location else settings.marts_dir / f"{name}.parquet"
        marts.append(Mart(name=name, table_dir=warehouse / f"{node['schema']}.db" / name, target=target))
    return sorted(marts, key=lambda mart: mart.name)


def as_duckdb_types(table: pa.Table) -> pa.Table:
    """Spark's types as DuckDB writes them: an instant is UTC microseconds, a string a plain string."""
    fields = []
    for field in table.schema:
        kind = field.type
        if pa.types.is_timestamp(kind):
            # Spark's timestamps are instants; written naive (INT96) or UTC-adjusted, they are UTC either way.
            kind = pa.timestamp("us", tz="UTC")
        elif pa.types.is_large_string(kind):
            kind = pa.string()
        fields.append(pa.field(field.name, kind, nullable=field.nullable))
    return table.cast(pa.schema(fields))


def read_table(table_dir: Path) -> pa.Table:
    files = sorted(table_dir.glob("part-*.parquet"))
    if not files:
        raise ExportError(f"no Spark table at {table_dir}: run the Spark build first (make features)")
    dataset = ds.dataset([str(path) for path in files], format="parquet")
    return dataset.to_table().replace_schema_metadata(None)


def export_marts(settings: Settings) -> list[Path]:
    """Write every mart of the last Spark build to its parquet file; return the files written."""
    path = manifest_path(settings)
    if not path.exists():
        raise ExportError(f"no dbt manifest at {path}: run the Spark build first (make features)")
    marts = marts_of(json.loads(path.read_text()), settings)
    if not marts:
        raise ExportError(f"the manifest at {path} has no external model (the marts)")
    written = []
    for mart in marts:
        table = as_duckdb_types(read_table(mart.table_dir))
        mart.target.parent.mkdir(parents=True, exist_ok=True)
        # Written beside and renamed: a reader never sees half a file.
        partial = mart.target.with_suffix(".parquet.partial")
        pq.write_table(table, partial, compression="snappy")
        partial.replace(mart.target)
        written.append(mart.target)
    return written


@app.callback()
def main() -> None:
    """Subcommands only: `python -m platform_common.spark_marts export`."""


@app.command()
def export() -> None:
    """Export the marts of the last Spark build to $SHOPRANK_HOME/marts (and merchant_growth/)."""
    try:
        written = export_marts(get_settings())
    except ExportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for path in written:
        typer.echo(f"exported {path}")


if __name__ == "__main__":
    sys.exit(app())
