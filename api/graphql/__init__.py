"""GraphQL over HTTP and WebSocket (both subprotocols) for Herald."""
