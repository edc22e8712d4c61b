"""Patron privacy: retention enforcement and anonymized statistics for public libraries.

Everything the Airflow DAGs do lives here and runs without Airflow through
``python -m patron_privacy``, so the same code is exercised by the CLI, the
tests and the scheduler.
"""

__version__ = "0.1.0"
