"""Evergreen ILS: its schema (real schema, table and column names), connector and synthetic data."""
