"""Springshare LibCal: program registrations at a hosted vendor (REST API 1.1)."""
