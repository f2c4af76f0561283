"""The seed's study: every cell of its matrix, run one after another (``rally-lm study``).

Plain Python (no Rally import): the cells, the resumable state of a study,
and its progress. The CLI (rally_lm.cli.study_cmd) runs each cell with the
real ``rally task start``, on the embedded testbed or an existing cloud.
"""
