"""The studio's database: SQLAlchemy models and the queries that read and write them.

This is the only package that writes SQL. It never imports gradio.
"""

from review_db.database import Database, create_db_engine, database_url, migrate

__all__ = ["Database", "create_db_engine", "database_url", "migrate"]
