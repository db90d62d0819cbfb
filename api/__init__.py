"""Herald's HTTP, WebSocket and GraphQL layer. ``api.app.create_app`` builds one replica."""

__version__ = "0.1.0"
