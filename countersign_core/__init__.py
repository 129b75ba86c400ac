"""Layer 1, the floor every process stands on: settings, connections, runtime, logs,
metrics, texts and migrations. It imports nothing of the project."""
