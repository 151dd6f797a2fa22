"""Online experiments of the ranker: A/B and team-draft interleaving, served by the ranking service.

model.py (the validated definition), store.py (kept as tags of the registered model, under the promotion
lock, audited), assignment.py (user -> arm by a hash of salt and user), interleaving.py (team draft),
live.py (the loaded arms and one request served), exposure_log.py (every request, every slot, as parquet),
cli.py (`python -m serving.experiments`). The design: docs/experiments.md.
"""
