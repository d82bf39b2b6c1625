"""Exports: watermon series written in exchange formats for other agencies."""
