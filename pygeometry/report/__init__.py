"""The library side of the experiment report (scripts/report.py): runs (training and evaluating them), figures
and the markdown of results/REPORT.md."""
