"""Notifications: routing, grouping, receivers, delivery, on-call and escalation."""
