"""The contention record, from a /proc and a cgroup tree written by the test."""

import os

import pytest

from rally_lm.probes import host_load

TICK = os.sysconf("SC_CLK_TCK")


def write_proc(root, cpu, running=1, load1=0.5, tool_ticks=0, qemu=None):
    """cpu: user nice system idle iowait irq softirq steal (jiffies)."""
    root.mkdir(exist_ok=True)
    (root / "stat").write_text("cpu  " + " ".join(map(str, cpu)) + " 0 0\n"
                               "cpu0 1 2 3 4 5 6 7 8 0 0\nintr 1\nprocs_running "
                               f"{running}\nprocs_blocked 0\n")
    (root / "loadavg").write_text(f"{load1} 0.40 0.30 2/300 12345\n")
    (root / "self").mkdir(exist_ok=True)
    (root / "self" / "stat").write_text(stat_line("rally (task)", tool_ticks))
    for pid, (comm, ticks) in (qemu or {}).items():
        (root / pid).mkdir(exist_ok=True)
        (root / pid / "comm").write_text(comm + "\n")
        (root / pid / "stat").write_text(stat_line(comm, ticks))


def stat_line(comm, ticks):
    # pid (comm) state ppid ... utime is field 14, stime 15 (1-based).
    rest = ["S"] + ["0"] * 10 + [str(ticks), str(ticks)] + ["0"] * 30
    return f"4242 ({comm}) " + " ".join(rest) + "\n"


def test_a_quiet_host_is_not_contended(tmp_path):
    proc, groups = tmp_path / "proc", tmp_path / "cpuacct"
    (groups / "rally-lm-control").mkdir(parents=True)
    (groups / "rally-lm-control" / "cpuacct.usage").write_text(str(10 * 10**9))
    (groups / "other").mkdir()
    write_proc(proc, [100, 0, 100, 800, 0, 0, 0, 0], tool_ticks=0,
               qemu={"77": ("qemu-system-x86", 0), "78": ("bash", 500)})
    sampler = host_load.HostLoadSampler(interval=3600, proc=proc, cgroups=groups).start()
    write_proc(proc, [300, 0, 200, 1450, 50, 0, 0, 0], running=3, load1=1.5,
               tool_ticks=TICK, qemu={"77": ("qemu-system-x86", 2 * TICK),
                                      "78": ("bash", 900)})
    (groups / "rally-lm-control" / "cpuacct.usage").write_text(str(13 * 10**9))
    load = sampler.stop()
    # 1000 jiffies: 300 busy, 650 idle, 50 iowait.
    assert (load.busy_share, load.iowait_share, load.steal_share) == (0.3, 0.05, 0.0)
    assert (load.runnable_max, load.load1_max) == (3, 1.5)
    assert load.tool_cpu_s == 2.0 and load.guests_cpu_s == 4.0
    assert load.groups_cpu_s == {"control": 3.0}
    assert load.samples == 2 and not load.contended and load.why == []
    assert host_load.HostLoad.from_dict(load.to_dict()) == load


def test_no_qemu_visible_leaves_the_guests_unknown(tmp_path):
    proc = tmp_path / "proc"
    write_proc(proc, [1, 0, 1, 8, 0, 0, 0, 0])
    sampler = host_load.HostLoadSampler(interval=3600, proc=proc,
                                        cgroups=tmp_path / "none").start()
    write_proc(proc, [2, 0, 2, 16, 0, 0, 0, 0])
    load = sampler.stop()
    assert load.guests_cpu_s is None and load.groups_cpu_s == {}


@pytest.mark.parametrize("busy, steal, crowded, why", [
    (0.5, 0.0, 0.0, []),
    (0.95, 0.0, 0.0, ["CPUs busy 95% of the time (>= 95%)"]),
    (0.5, 0.05, 0.0, ["steal 5.0% (>= 5%): the machine under this one took CPU time"]),
    (0.5, 0.0, 0.25, ["more runnable threads than twice the CPUs in 25% of the samples "
                      "(>= 25%)"]),
    (0.94, 0.049, 0.24, []),
])
def test_contention_is_named_with_its_threshold(busy, steal, crowded, why):
    assert host_load.judge(busy, steal, crowded) == why


def test_a_steal_heavy_host_is_contended(tmp_path):
    proc = tmp_path / "proc"
    write_proc(proc, [0, 0, 0, 0, 0, 0, 0, 0])
    sampler = host_load.HostLoadSampler(interval=3600, proc=proc, cgroups=tmp_path).start()
    write_proc(proc, [400, 0, 100, 400, 0, 0, 0, 100], running=9)
    load = sampler.stop()
    assert load.steal_share == 0.1 and load.contended
    assert load.why[0].startswith("steal 10.0%")
    assert load.why[1].startswith("more runnable threads")


def test_a_command_with_spaces_and_parentheses_is_read_right():
    assert host_load.process_cpu_s(stat_line("a (b) c", 3 * TICK)) == 6.0


def test_the_real_proc_can_be_read():
    load = host_load.HostLoadSampler(interval=0.05).start()
    load = load.stop()
    assert load.cpus == os.cpu_count() and 0.0 <= load.busy_share <= 1.0
