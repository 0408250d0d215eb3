"""agent-runner: a Temporal worker that executes AI-agent runs in a workspace directory."""

__version__ = "0.1.0"
