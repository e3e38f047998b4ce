"""The users table and the one store both API versions read and write.

Uniqueness of email is the database's job (a unique index on the lower-cased
address), so concurrent creates of one address cannot both succeed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from .domain import DuplicateEmail, User

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("first_name", String(100), nullable=False),
    Column("last_name", String(100), nullable=False),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


#: The largest integer any integer the service sends to a database may be (an
#: offset, a keyset position): SQLite's integers and PostgreSQL's ``BIGINT``
#: are 64-bit signed; past this SQLite raises ``OverflowError``.
BIGINT_MAX = 2**63 - 1
#: The largest ``users.id`` each database can hold: SQLite's integers are 64-bit,
#: the others' ``INTEGER`` (PostgreSQL's included) 32-bit.
_MAX_ID = {"sqlite": BIGINT_MAX}
_MAX_ID_DEFAULT = 2**31 - 1


def _user(row: Any) -> User:
    return User(row.id, row.first_name, row.last_name, row.email, row.created_at)


class UserStore:
    """Create, read, update, delete and page through users."""

    def __init__(self, engine: Engine, on_change: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.max_id = _MAX_ID.get(engine.dialect.name, _MAX_ID_DEFAULT)
        #: Called after every committed write (the service invalidates cached reads).
        self.on_change = on_change or (lambda: None)

    def ping(self) -> None:
        """Readiness: the database answers a query."""
        with self.engine.connect() as connection:
            connection.execute(select(1))

    def create(self, first_name: str, last_name: str, email: str) -> User:
        values = {
            "first_name": first_name,
            "last_name": last_name,
            "email": email,
            "email_key": email.lower(),
            "created_at": datetime.now(UTC).replace(microsecond=0),
        }
        try:
            with self.engine.begin() as connection:
                row = connection.execute(insert(users).values(values).returning(users)).one()
        except IntegrityError:
            raise DuplicateEmail(email) from None
        self.on_change()
        return _user(row)

    def _storable(self, user_id: int) -> bool:
        """Whether the id column could hold ``user_id``; the database refuses any other."""
        return 0 <= user_id <= self.max_id

    def get(self, user_id: int) -> User | None:
        if not self._storable(user_id):
            return None
        with self.engine.connect() as connection:
            row = connection.execute(select(users).where(users.c.id == user_id)).first()
        return None if row is None else _user(row)

    def page(
        self,
        *,
        limit: int,
        offset: int = 0,
        after: int | None = None,
        email: str | None = None,
    ) -> list[User]:
        """Users by id; ``after`` for keyset paging, ``offset`` for v1's.

        ``offset`` and ``after`` may be anything up to :data:`BIGINT_MAX`.
        """
        if after is not None and after >= self.max_id:
            # No id lies beyond; PostgreSQL would refuse the comparison with
            # its 32-bit column ("integer out of range").
            return []
        query = select(users).order_by(users.c.id).limit(limit)
        if after is not None:
            query = query.where(users.c.id > after)
        if email is not None:
            query = query.where(users.c.email_key == email.lower())
        if offset:
            query = query.offset(offset)
        with self.engine.connect() as connection:
            return [_user(row) for row in connection.execute(query)]

    def update(self, user_id: int, changes: Mapping[str, str]) -> User | None:
        if not self._storable(user_id):
            return None
        values = dict(changes)
        if not values:
            return self.get(user_id)
        if "email" in values:
            values["email_key"] = values["email"].lower()
        try:
            with self.engine.begin() as connection:
                row = connection.execute(
                    update(users).where(users.c.id == user_id).values(values).returning(users)
                ).first()
        except IntegrityError:
            raise DuplicateEmail(values.get("email", "")) from None
        if row is None:
            return None
        self.on_change()
        return _user(row)

    def delete(self, user_id: int) -> bool:
        if not self._storable(user_id):
            return False
        with self.engine.begin() as connection:
            result = connection.execute(delete(users).where(users.c.id == user_id))
        if not result.rowcount:
            return False
        self.on_change()
        return True

    def count(self) -> int:
        with self.engine.connect() as connection:
            found = connection.execute(select(func.count()).select_from(users)).scalar()
        return int(found or 0)

    def batches(self, size: int = 1000) -> Iterator[list[User]]:
        """Every user by id, ``size`` at a time (keyset: bounded memory, and a
        user added meanwhile past the last id is included)."""
        after = 0
        while True:
            with self.engine.connect() as connection:
                rows = connection.execute(
                    select(users).where(users.c.id > after).order_by(users.c.id).limit(size)
                ).all()
            if not rows:
                return
            yield [_user(row) for row in rows]
            after = rows[-1].id
