"""rachel-cloud core."""
