"""rally_lm: live-migration benchmarking for OpenStack, as Rally plugins."""
