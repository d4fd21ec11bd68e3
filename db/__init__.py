"""PostgreSQL: schema migrations and the connection pool used by activities."""
