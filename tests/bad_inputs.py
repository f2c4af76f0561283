"""Task arguments a user could get wrong, and what Rally must answer before creating anything.

Each entry: (id, task args layered over task_templates/args/testbed-local-off.yaml,
a fragment of the message, phase). "syntax" entries fail Rally's syntax
validation (no cloud needed: tests/unit/test_task_templates.py);
"semantic" ones need the cloud's answer (tests/functional/test_bad_input.py
runs every entry against the testbed and checks nothing was created).
"""

BAD_INPUTS = [
    # the scenario's arguments (Rally's args-spec from run()'s annotations)
    ("block-migration-word", {"block_migration": "yes"},
     "Argument 'block_migration' is invalid", "syntax"),
    ("block-migration-quoted-bool", {"block_migration": "true"},
     "Argument 'block_migration' is invalid", "syntax"),
    ("max-parallel-zero", {"max_parallel": 0}, "Argument 'max_parallel' is invalid", "syntax"),
    ("timeout-zero", {"migration_timeout": 0}, "Argument 'migration_timeout' is invalid",
     "syntax"),
    ("timeout-negative", {"migration_timeout": -5}, "Argument 'migration_timeout' is invalid",
     "syntax"),
    ("on-timeout-unknown", {"on_timeout": "retry"}, "Argument 'on_timeout' is invalid",
     "syntax"),
    ("probe-interval-too-fine", {"probe_interval": 0.0001},
     "Argument 'probe_interval' is invalid", "syntax"),
    ("probe-interval-too-coarse", {"probe_interval": 5},
     "Argument 'probe_interval' is invalid", "syntax"),
    ("tcp-rate-negative", {"tcp_rate_bytes": -1}, "Argument 'tcp_rate_bytes' is invalid",
     "syntax"),
    ("tcp-rate-below-one-record", {"tcp_rate_bytes": 100},
     "Argument 'tcp_rate_bytes' is invalid", "syntax"),
    ("status-grace-negative", {"status_grace": -1}, "Argument 'status_grace' is invalid",
     "syntax"),
    ("pause-negative", {"pause_between_directions": -1},
     "Argument 'pause_between_directions' is invalid", "syntax"),
    ("dirty-rate-seconds-negative", {"dirty_rate_seconds": -1},
     "Argument 'dirty_rate_seconds' is invalid", "syntax"),
    ("icmp-probe-word", {"icmp_probe": "yes"}, "Argument 'icmp_probe' is invalid", "syntax"),
    ("hypervisor-uris-not-a-map", {"hypervisor_uris": "qemu+ssh://hv1/system"},
     "Argument 'hypervisor_uris' is invalid", "syntax"),
    ("tunnelling-unquoted-off", {"tunnelling": False},
     "label 'tunnelling' is the boolean False, not a string: quote it (\"off\")", "syntax"),
    ("storage-empty", {"storage": ""}, "label 'storage' must be a non-empty string", "syntax"),
    ("influx-url-without-scheme", {"influx_url": "influx:8086"}, "influx", "syntax"),
    # the lm_workload context's schema
    ("vm-count-zero", {"vm_count": 0}, "0 is less than the minimum of 1", "syntax"),
    ("vm-count-too-many", {"vm_count": 101}, "101 is greater than the maximum of 100", "syntax"),
    ("disk-fill-too-full", {"disk_fill_percent": 96}, "96 is greater than the maximum of 95",
     "syntax"),
    ("disk-fill-negative", {"disk_fill_percent": -1}, "-1 is less than the minimum of 0",
     "syntax"),
    ("disk-fill-path-relative", {"disk_fill_percent": 50, "disk_fill_path": "var/log"},
     "'var/log' does not match", "syntax"),
    ("disk-device-not-a-device", {"disk_fill_percent": 50, "disk_device": "vdb"},
     "'vdb' does not match", "syntax"),
    ("dirty-rate-negative", {"dirty_rate_mib": -1}, "-1 is less than the minimum of 0",
     "syntax"),
    ("dirty-rate-list-negative", {"vm_count": 2, "dirty_rate_mib": [4, -1]},
     "On instance[1]:\n    -1", "syntax"),
    # the runner and the SLAs
    ("round-trips-zero", {"round_trips": 0}, "0 is less than the minimum of 1", "syntax"),
    ("sla-downtime-zero", {"sla_max_downtime_ms": 0}, "lm_max_downtime", "syntax"),
    ("sla-percentile-zero", {"sla_downtime_percentile": 0}, "lm_max_downtime", "syntax"),
    ("sla-measure-unknown", {"sla_downtime_measure": "wire"}, "lm_max_downtime", "syntax"),
    ("sla-success-over-100", {"sla_min_success_percent": 101}, "lm_success_rate", "syntax"),
    ("sla-migration-negative", {"sla_max_migration_s": -1}, "lm_max_migration_duration",
     "syntax"),
    ("sla-stall-zero", {"sla_max_tcp_stall_ms": 0}, "lm_tcp_continuity", "syntax"),
    # the flavors context (flavor_spec)
    ("flavor-spec-without-ram", {"flavor": "rally-lm-bad-flavor", "flavor_spec": {"disk": 1}},
     "flavors", "syntax"),
    # what only the cloud can tell
    ("same-host-twice", {"target_host": "hv1"},
     "'source_host' and 'target_host' are both 'hv1'", "semantic"),
    ("unknown-target-host", {"target_host": "no-such-host"},
     "compute host 'no-such-host' is unknown to Nova", "semantic"),
    ("unknown-flavor", {"flavor": "no-such-flavor"},
     "flavor 'no-such-flavor' does not exist", "semantic"),
    ("flavor-spec-over-an-existing-flavor",
     {"flavor": "lm.small.scaled-16", "flavor_spec": {"ram": 256, "disk": 1}},
     "flavor 'lm.small.scaled-16' already exists", "semantic"),
    ("unknown-image", {"image": "no-such-image"}, "image 'no-such-image' does not exist",
     "semantic"),
    ("unknown-network", {"network": "no-such-network"},
     "network 'no-such-network' does not exist", "semantic"),
    ("working-set-larger-than-ram", {"dirty_working_set_mib": 1024},
     "agent.dirty_working_set_mib=1024 does not fit flavor", "semantic"),
    ("dirty-rate-without-working-set", {"dirty_working_set_mib": 0, "dirty_rate_mib": 4},
     "give the dirtier a working set", "semantic"),
    ("dirty-rates-not-one-per-vm", {"vm_count": 2, "dirty_rate_mib": [4, 16, 48],
                                    "dirty_working_set_mib": 32},
     "agent.dirty_rate_mib lists 3 rates for 2 VMs", "semantic"),
]

#: Values that are valid although "falsy": they must reach the task unchanged.
FALSY_BUT_VALID = {"block_migration": False, "pause_between_directions": 0,
                   "status_grace": 0, "sla_min_success_percent": 0, "dirty_rate_seconds": 0,
                   "icmp_probe": False, "disk_fill_percent": 0}
BAD_INPUTS += [
    ("probe-via-unknown", {"probe_via": "carrier-pigeon"}, "'carrier-pigeon' is not one of",
     "syntax"),
    ("agent-delivery-unknown", {"agent_delivery": "usb-stick"}, "'usb-stick' is not one of",
     "syntax"),
    # YAML's unquoted off: the boolean reaches validation as given, not as "off".
    ("agent-tx-checksum-unquoted-off", {"agent_tx_checksum_offload": False},
     "False is not one of", "syntax"),
    ("floating-without-network", {"probe_via": "floating"},
     "probe_via: floating needs floating_network", "semantic"),
    ("floating-network-not-external", {"probe_via": "floating", "floating_network": "lm-tenant"},
     "network 'lm-tenant' is not external", "semantic"),
]
_KEY = "keyfile=/var/lib/rally-lm/testbed/ssh/id_ed25519&no_verify=1"
BAD_INPUTS += [
    ("hypervisor-uris-without-target",
     {"hypervisor_uris": {"hv1": f"qemu+ssh://root@10.231.0.11/system?{_KEY}"}},
     "hypervisor_uris has no URI for hv2", "semantic"),
    ("hypervisor-uri-unreachable",
     {"hypervisor_uris": {"hv1": f"qemu+ssh://root@10.231.0.11/system?{_KEY}",
                          "hv2": f"qemu+ssh://root@10.231.0.99/system?{_KEY}"}},
     "libvirtd on hv2 does not answer", "semantic"),
]
