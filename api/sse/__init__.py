"""Server-sent events (SPEC §10): chat at ``/sse/chat/{room}``, GraphQL over SSE at ``/graphql/stream``."""
