"""The async core: HTTP and WebSocket drivers, the recorder and the LoadTester orchestration."""
