"""Koha ILS: its schema (real table and column names), connector and synthetic data."""
