"""Libki: public-computer time, reservations and printing (MariaDB)."""
