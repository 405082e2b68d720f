"""Probes: functions (scenario data, endpoints) -> result. One module per check."""
