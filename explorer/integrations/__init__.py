"""Hooks into the user's own training (a Trainer callback, a recorder for plain loops) writing explorer recordings."""
