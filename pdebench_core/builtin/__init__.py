"""The core's own plugins: tasks, metrics and sinks, registered like any other."""
