"""Ingestion: one parser per delivery format, one set of rules for storing what they read."""
