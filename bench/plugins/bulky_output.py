"""A Rally scenario that only emits output of a given size (bench/rally_memory.py).

No cloud, no probes, nothing of rally_lm: what Rally itself keeps of an
iteration's output is all that can grow.
"""

from __future__ import annotations

import json
import time

from rally.task import scenario


@scenario.configure(name="RallyLmBench.bulky_output", platform="default")
class BulkyOutput(scenario.Scenario):
    """Wait ``seconds`` (an iteration's worth of sampling), then add one "complete"
    table output of about ``kib`` KiB of JSON text."""

    def run(self, kib: int = 200, seconds: float = 0.5) -> None:
        time.sleep(seconds)
        row = ["x" * 100] * 10  # ~1 KiB of JSON per row
        rows = [[f"{self.context['iteration']}-{n}", json.dumps(row)] for n in range(kib)]
        self.add_output(complete={"title": "bulky", "chart_plugin": "Table",
                                  "data": {"cols": ["id", "row"], "rows": rows}})
