"""The operator TUI (Textual): a live, keyboard-driven view of the fleet.

Pure logic (cells, filters, the table diff, the summary text) lives in modules
that do not import Textual, and is unit-tested on its own; the screens and
widgets only render it and run blocking work in thread workers.
"""
