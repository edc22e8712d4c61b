"""Squid proxy logs (``access.log`` and its rotations): Internet use on public PCs."""
