"""The dbt project (SQL, run by dbt) and, in `transforms.streaming`, the stream processor's Python."""
