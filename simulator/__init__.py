"""Seeded, vectorised marketplace simulator: the raw landing zone and the oracle behind it.

`generate(SimConfig(...))` writes `raw/` and `oracle/` under the state folder; see docs/simulator.md.
"""

from simulator.config import ModelParams, SimConfig
from simulator.run import Summary, generate

__all__ = ["ModelParams", "SimConfig", "Summary", "generate"]
