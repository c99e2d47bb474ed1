"""The `rachel-cloud` command line: the composition root.

This is the one package allowed to import every other (core, jobs, webhook,
tui, sim); those never import each other. Subcommands load lazily so that
`rachel-cloud --help` stays fast and a command's heavy imports (Textual,
Litestar, asyncssh) are paid only by the process that runs it.
"""
