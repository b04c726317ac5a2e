"""The lowering of a checked PQL query to an engine's expressions (see ``backend.Backend``)."""
