"""patience-daemon: the shared rate-limit coordinator and metrics store of rpr and patience.

protocol: the messages (1.0 and 2.0); coordinator: the decisions; server: the asyncio process;
storage: SQLite metrics; paths: where the socket lives; client: the tools' synchronous client;
manager: finding and auto-starting the daemon; cli: `patience-daemon`. Its configuration is
the shared one (patience.config).
"""
