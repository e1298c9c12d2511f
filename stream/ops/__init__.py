"""Operations: the CLI, the embedded broker, topic administration, the worker runner, the live
view, demo traffic and the monitoring configuration."""
