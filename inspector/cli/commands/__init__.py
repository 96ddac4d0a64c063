"""One module per ``inspector`` command, each with ``run(args) -> int`` (see :data:`inspector.cli.COMMANDS`)."""
