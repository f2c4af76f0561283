"""What Rally itself holds per iteration: its RSS over a task that only emits output.

The soak (bench/soak.py) saw Rally's RSS grow by ~1.8x each iteration's
output. Rally's ResultConsumer (rally/task/engine.py) keeps every iteration's
result in memory until ``raw_result_chunk_size`` of them (1000 by default)
are written to its database. This bench runs a task of a scenario that does
nothing but emit output of the soak's size (bench/plugins/bulky_output.py:
no cloud, no rally_lm code), in a scratch Rally database, once with Rally's
default chunk and once with ``--chunk`` (1 writes each iteration at once),
sampling Rally's RSS as the soak does, and prints both slopes.

    .venv/bin/python bench/rally_memory.py --iterations 100 --kib 200

Runs anywhere Rally is installed; no testbed, no root.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from soak import Sampler, slope_per_hour  # noqa: E402


def run_task(home: Path, iterations: int, kib: int, seconds: float, chunk: int | None) -> dict:
    conf = home / "rally.conf"
    conf.write_text(f"[database]\nconnection = sqlite:///{home}/rally.sqlite\n"
                    + (f"[DEFAULT]\nraw_result_chunk_size = {chunk}\n" if chunk else ""))
    rally = [str(Path(sys.executable).with_name("rally")), "--config-file", str(conf),
             "--plugin-paths", str(ROOT / "plugins")]
    env = {**os.environ, "HOME": str(home)}
    subprocess.run([*rally, "db", "recreate"], check=True, capture_output=True, env=env)
    subprocess.run([*rally, "env", "create", "--name", "bench"], check=True,
                   capture_output=True, env=env)
    task = home / "task.json"
    scenario = {"RallyLmBench.bulky_output": {"kib": kib, "seconds": seconds}}
    task.write_text(json.dumps({"version": 2, "title": "rally memory", "subtasks": [{
        "title": "bulky", "scenario": scenario,
        "runner": {"constant": {"times": iterations, "concurrency": 1}}}]}))
    began = time.time()
    proc = subprocess.Popen([*rally, "task", "start", str(task)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    with Sampler(proc.pid, interval=0.5) as sampler:
        output, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"rally task start failed ({proc.returncode}):\n{output[-3000:]}")
    # The load only: after its first tenth (imports, first-use caches) and before
    # the end, when `rally task start` reads every result back to print them.
    ended = began + iterations * seconds
    settled = began + (ended - began) / 10
    samples = [s for s in sampler.samples if s["wall"] <= ended]
    slope, n = slope_per_hour(samples, "rss_mib", settled)
    return {"chunk": chunk or "Rally's default (1000)", "iterations": iterations, "kib": kib,
            "wall_s": round(time.time() - began, 1), "samples": n,
            "rss_mib_first": round(samples[0]["rss_mib"], 1) if samples else None,
            "growth_kib_per_iteration": round(slope * seconds / 3600 * 1024, 1),
            "rss_mib_at_end_of_load": round(samples[-1]["rss_mib"], 1) if samples else None,
            "rss_mib_max": round(max(s["rss_mib"] for s in sampler.samples), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--kib", type=int, default=200,
                        help="JSON output per iteration (the soak's: 183-218 KB)")
    parser.add_argument("--seconds", type=float, default=0.5, help="per iteration")
    parser.add_argument("--chunk", type=int, default=1)
    args = parser.parse_args()
    results = []
    for chunk in (None, args.chunk):
        with tempfile.TemporaryDirectory(prefix="rally-memory-") as home:
            results.append(run_task(Path(home), args.iterations, args.kib, args.seconds, chunk))
            print(json.dumps(results[-1]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
