"""The database: one interface (:class:`Database`), SQLite and PostgreSQL behind it. SQL lives only here.

- ``database.py``   :class:`Database`, the parts below on one backend, and how a URL picks the backend
- ``accounts.py``   users, points and the ledger, API keys, webhook secrets, short-video analyses
- ``orders.py``     orders: create, admit, claim, progress, finish, end, charge, expire; the console's and
                    /metrics' views of them
- ``uploads.py``    upload sessions
- ``webhooks.py``   webhook deliveries and their attempts
- ``idempotency.py`` idempotency keys of order/create
- ``models.py``     the values handed out (User, Order, ...)
- ``schema.py``     the schema and its one chain of migrations, both engines side by side
- ``backend.py``    the seam: what a backend provides
- ``sqlite.py``     the SQLite backend (the embedded default)
- ``postgres.py``   the PostgreSQL backend (``YINZI_DATABASE_URL=postgresql://...``)

The parts write portable SQL once; everything that differs between engines sits in ``schema.py`` (DDL) and
in the backend modules (connections, transactions and locks, placeholders, errors, schema version).
"""

from yinzi.store.backend import IntegrityError
from yinzi.store.database import Database
from yinzi.store.models import (
    TERMINAL,
    ApiKey,
    Caller,
    IdempotentRequest,
    Order,
    OrderRef,
    ResultFile,
    Upload,
    User,
    WebhookDelivery,
)

__all__ = [
    "TERMINAL",
    "ApiKey",
    "Caller",
    "Database",
    "IdempotentRequest",
    "IntegrityError",
    "Order",
    "OrderRef",
    "ResultFile",
    "Upload",
    "User",
    "WebhookDelivery",
]
