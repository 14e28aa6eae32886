"""Chain access: compiler, contract bindings, deployment."""
