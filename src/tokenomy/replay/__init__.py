"""Replay real traffic (gateway ledger, bench requests, traces) through the fleet simulator under alternatives."""
