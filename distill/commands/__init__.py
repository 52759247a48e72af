"""One module per `gendistiller` subcommand, each with `add_arguments(parser)` and `run(args) -> int`."""
