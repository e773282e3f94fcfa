"""patience-daemon: the shared rate-limit coordinator and metrics store of rpr and patience.

protocol: the messages (1.0 and 2.0); coordinator: the decisions; server: the asyncio process;
storage: SQLite metrics; paths: where the socket lives; client: the tools' synchronous client;
settings: the daemon's configuration; cli: `patience-daemon`.
"""
