"""SUPERB through s3prl's own runner: the task table, learning-rate sweeps, reports with intervals, chance levels and
QbE scoring."""
