"""`make monitor`: data quality, feature health and drift, freshness and online model quality, with alerts.

One run judges one window (default: the last full UTC day) and writes `$SHOPRANK_HOME/monitoring/<run>/`:
`alerts.json` (every alert: check, view/feature, measured value, threshold, window), `report.html` (plots) and
`metrics.json`, `online_quality.csv` (per day and surface) and dbt's `dbt_sources.json`; the same files go to
MLflow. Thresholds live in `thresholds.yml` (config.py); landing freshness thresholds are dbt's (_sources.yml).
"""
