"""rachel-cloud jobs."""
