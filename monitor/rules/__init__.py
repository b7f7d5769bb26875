"""Rules and alerts: rule files, their evaluation, and the alert lifecycle."""
