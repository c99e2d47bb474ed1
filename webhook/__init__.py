"""rachel-cloud webhook."""
