"""rachel-cloud tui."""
