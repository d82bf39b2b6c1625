"""The shared observation store: schema, engine and repositories."""
