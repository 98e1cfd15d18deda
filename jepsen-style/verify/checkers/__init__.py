"""History checkers: pure functions from a recorded history to a verdict (no I/O, no cluster)."""
