"""The aiohttp app: REST API, WebSocket hub, authentication and roles, the console."""
