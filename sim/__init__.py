"""rachel-cloud sim."""
