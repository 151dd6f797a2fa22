"""Online feature reads for one ranking request: one contract, three read modes.

- `base`: the reader contract (`FeatureReader`), the value it returns (`FeatureVectors`), the error the service
  turns into a 503 (`FeatureStoreUnavailable`) and the shared constants.
- `routing`: the two-step lookup every mode makes (user and product rows, then the user-category and merchant
  rows the product row points to), written once.
- `snapshot` (the default), `direct`, `feast` (the reference): one module per read mode; `table` and `store`
  hold what the snapshot and direct modes share (in-memory view tables; reading Feast's SQLite online store).
- `factory.make_reader`: picks and builds the reader for a mode.

This file imports nothing, so importing any one module of the package never loads the others.
"""
