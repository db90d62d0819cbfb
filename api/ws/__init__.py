"""WebSocket plumbing shared by the chat and GraphQL endpoints."""
