"""ClickHouse analytics: DDL, batch writer, queries; chDB embedded or a server."""
