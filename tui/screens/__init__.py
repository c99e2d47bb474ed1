"""The TUI's screens: fleet, server, jobs, and the modal confirmation and help."""
