"""Streamed features (issue 17): live events -> windowed features per user and product -> Feast push + log.

`events` parses and validates one event, `windows` is the one definition of the features (used by the
processor and by the backfill alike), `processor` is the long-running consumer (`make stream`), `backfill`
replays historical raw events through the same definitions. docs/streaming.md describes the whole path.
"""
