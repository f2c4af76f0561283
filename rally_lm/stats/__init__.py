"""Statistics of the benchmark's figures: intervals and comparisons (no Rally import)."""
