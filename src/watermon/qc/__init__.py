"""Quality control: checks beside the raw observations, overrides, gap filling."""
