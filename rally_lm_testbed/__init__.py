"""The embedded testbed: a real two-compute OpenStack inside network namespaces.

Not part of the Rally plugin package (``rally_lm``): Rally imports every
module under ``rally_lm`` when it loads plugins, and none of this belongs there.
"""
