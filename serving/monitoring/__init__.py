"""`make monitor`: data quality, feature health and drift, freshness and online model quality, with alerts.

One run judges one window (default: the last full UTC day) and writes `$SHOPRANK_HOME/monitoring/<run>/`:
`alerts.json` (every alert: check, view/feature, measured value, threshold, window), `report.html` (plots) and
`metrics.json`; the same files go to MLflow. Thresholds live in `thresholds.yml` (config.py).
"""
