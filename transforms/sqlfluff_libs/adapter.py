"""`adapter.dispatch` for the SQL linter's Jinja templater (it has dbt's ref/source/var stand-ins, no adapter).

Lints the DuckDB text: a dispatched macro (macros/cross_engine.sql) resolves to its `default__` variant, the
one dbt runs on the `local` target.
"""

from typing import Any

from jinja2 import pass_context
from jinja2.runtime import Context


@pass_context
def dispatch(context: Context, macro_name: str, macro_namespace: str | None = None) -> Any:
    return context[f"default__{macro_name}"]
