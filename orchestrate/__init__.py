"""Airflow orchestration of the Meltano project (README.md here)."""
