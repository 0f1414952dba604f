"""Persistent pools: their settings, what they hold, slinging work to a polecat, reconcile."""
