"""Plain data that crosses layers and processes: no torch, no Qt."""
