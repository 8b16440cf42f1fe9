"""Bring your own data: reading and importing datasets, routing them into leaves, rebalancing, export."""
