"""Measurement core: probes, timelines and their analysis. No Rally imports."""
