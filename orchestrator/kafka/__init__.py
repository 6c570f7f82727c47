"""Plain kafka-python clients for the CLI and tools (the agents use Faust's)."""
