"""Demo data: a synthetic but physically plausible season for the demo basin, so the
whole pipeline (ingestion, quality control, alerts, exports) can run without an agency feed."""
