"""Quality and speed benchmarks, metrics and reports."""
