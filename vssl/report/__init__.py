"""Reporting: results/table.csv (vssl.report.table) and its seaborn figures (.figures)."""
