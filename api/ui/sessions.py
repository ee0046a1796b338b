"""Dashboard sessions: server-side rows in the read store, a random id in an HttpOnly cookie.

Every process of a deployment reads the same table, so signing out (deleting the row) ends the
session in all of them at once; the cookie holds only a random id and the table only its
SHA-256, so neither a leaked row nor a leaked log line is a live session.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from litestar import Request, Response  # noqa: TC002 - read at run time by Litestar
from litestar.concurrency import sync_to_thread
from litestar.datastructures import Cookie
from litestar.response import Redirect

from api.tokens import Principal, user_id_of
from projections.store.base import timestamp_text  # fixed width: text order is time order
from services.usage import Writer

if TYPE_CHECKING:
    from projections.store.base import ReadStore

SESSION_COOKIE = "ml_session"
SESSION_TTL = timedelta(hours=12)
MAX_SESSIONS_PER_USER = 20  # the oldest go first: a script signing in in a loop stays bounded
UI_SCOPE_KEY = "modelledger_ui"  # where the router's ``before_request`` puts the ``UiContext``
_DDL = (
    (
        "CREATE TABLE IF NOT EXISTS ui_sessions (id_sha256 TEXT PRIMARY KEY, "
        "user_id TEXT NOT NULL, subject TEXT NOT NULL, issuer TEXT NOT NULL, "
        "scopes TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL, "
        "display_name TEXT NOT NULL DEFAULT '')"
    ),
    "CREATE INDEX IF NOT EXISTS ix_ui_sessions_user ON ui_sessions (user_id, created_at)",
    "CREATE INDEX IF NOT EXISTS ix_ui_sessions_expiry ON ui_sessions (expires_at)",
    # A sign-in link's id once used; kept until the link would have expired anyway.
    "CREATE TABLE IF NOT EXISTS ui_used_links (jti TEXT PRIMARY KEY, expires_at TEXT NOT NULL)",
)
_ready: weakref.WeakSet[ReadStore] = weakref.WeakSet()


@dataclass(frozen=True)
class Session:
    """A signed-in dashboard user: the same identity a bearer token with this subject and
    issuer has in the API."""

    user_id: uuid.UUID
    subject: str
    issuer: str
    scopes: frozenset[str]
    expires_at: datetime
    name: str = ""  # the identity provider's name for the user, shown instead of the subject

    def principal(self) -> Principal:
        return Principal(self.user_id, self.subject, self.scopes, self.issuer,
                         Writer(self.user_id, self.subject, self.issuer), self.name)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class SessionStore:
    """The ``ui_sessions`` and ``ui_used_links`` tables (synchronous: call in a thread)."""

    def __init__(self, store: ReadStore, ttl: timedelta = SESSION_TTL) -> None:
        self.store = store
        self.ttl = ttl

    def _ensure(self) -> None:
        if self.store in _ready:
            return
        # Under the store's write lock: two processes starting at once do not race the DDL.
        with self.store.write("ui_sessions") as cur:
            for statement in _DDL:
                cur.execute(statement)
            _add_display_name(self.store, cur)
        _ready.add(self.store)

    def start(self, subject: str, issuer: str, scopes: frozenset[str], name: str = "") -> str:
        """A new session's cookie value; prunes expired sessions and the user's oldest."""
        self._ensure()
        sid = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        now_text = timestamp_text(now)
        user_id = str(user_id_of(subject, issuer))
        sql = self.store.sql
        with self.store.write("ui_sessions") as cur:
            cur.execute(sql("DELETE FROM ui_sessions WHERE expires_at < ?"), (now_text,))
            cur.execute(sql("DELETE FROM ui_used_links WHERE expires_at < ?"), (now_text,))
            cur.execute(
                sql("SELECT id_sha256 FROM ui_sessions WHERE user_id = ? "
                    "ORDER BY created_at DESC"),
                (user_id,),
            )
            for (old,) in cur.fetchall()[MAX_SESSIONS_PER_USER - 1:]:
                cur.execute(sql("DELETE FROM ui_sessions WHERE id_sha256 = ?"), (old,))
            cur.execute(
                sql("INSERT INTO ui_sessions (id_sha256, user_id, subject, issuer, scopes, "
                    "created_at, expires_at, display_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                (_digest(sid), user_id, subject, issuer, " ".join(sorted(scopes)),
                 now_text, timestamp_text(now + self.ttl), name),
            )
        return sid

    def find(self, sid: str) -> Session | None:
        """The live session of a cookie value, else None (unknown, ended or expired)."""
        self._ensure()
        with self.store.read() as cur:
            cur.execute(
                self.store.sql(
                    "SELECT user_id, subject, issuer, scopes, expires_at, display_name "
                    "FROM ui_sessions "
                    "WHERE id_sha256 = ?"
                ),
                (_digest(sid),),
            )
            row = cur.fetchone()
        if row is None:
            return None
        expires = datetime.fromisoformat(row[4])
        if expires <= datetime.now(UTC):
            return None
        return Session(uuid.UUID(row[0]), row[1], row[2], frozenset(row[3].split()), expires,
                       row[5])

    def end(self, sid: str) -> None:
        self._ensure()
        with self.store.write("ui_sessions") as cur:
            cur.execute(self.store.sql("DELETE FROM ui_sessions WHERE id_sha256 = ?"),
                        (_digest(sid),))

    def use_link(self, jti: str, expires_at: datetime) -> bool:
        """Mark a sign-in link used; True only the first time, in any process."""
        self._ensure()
        with self.store.write("ui_sessions") as cur:
            cur.execute(
                self.store.sql(
                    "INSERT INTO ui_used_links VALUES (?, ?) ON CONFLICT (jti) DO NOTHING"
                ),
                (_digest(jti), timestamp_text(expires_at)),
            )
            return bool(cur.rowcount == 1)  # type: ignore[attr-defined]


def _add_display_name(store: ReadStore, cur: Any) -> None:
    """The column sessions started before display names lacked (added once, in place)."""
    if store.backend == "postgres":
        cur.execute("ALTER TABLE ui_sessions ADD COLUMN IF NOT EXISTS "
                    "display_name TEXT NOT NULL DEFAULT ''")
        return
    cur.execute("SELECT name FROM pragma_table_info('ui_sessions')")
    if "display_name" not in {row[0] for row in cur.fetchall()}:
        cur.execute("ALTER TABLE ui_sessions ADD COLUMN display_name TEXT NOT NULL DEFAULT ''")


@dataclass(frozen=True)
class UiContext:
    """What the dashboard's handlers share (put into each request's scope by the router)."""

    sessions: SessionStore
    link_key: bytes  # signs sign-in links; derived from the JWT secret, never a bearer key
    csrf_secret: str  # checks CSRF tokens (derived from the JWT secret: every process alike)
    https_base: bool = False  # MODELLEDGER_BASE_URL is https: every cookie Secure

    def __deepcopy__(self, memo: dict[int, Any]) -> UiContext:
        return self  # Litestar copies layer arguments; this holds the process's store


def ui_context(request: Request[Any, Any, Any]) -> UiContext:
    return request.scope[UI_SCOPE_KEY]  # type: ignore[no-any-return, literal-required]


def safe_next(path: str | None) -> str:
    """``path`` if it is a dashboard path on this host, else the dashboard's start page."""
    if not path or not path.startswith("/ui/") or "\\" in path:
        return "/ui/"
    parts = urlsplit(path)
    return path if not parts.scheme and not parts.netloc else "/ui/"


def session_cookie(request: Request[Any, Any, Any], value: str, max_age: int) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE, value=value, path="/ui", httponly=True, samesite="lax",
        secure=is_https(request.scope, https_base=ui_context(request).https_base), max_age=max_age,
    )


def is_https(scope: Any, *, https_base: bool) -> bool:
    """Whether cookies must be Secure: the request came over HTTPS, or the service's public
    base URL is HTTPS (TLS ended at a proxy, which uvicorn's scheme does not show)."""
    return https_base or scope.get("scheme") == "https"


async def begin_session(
    request: Request[Any, Any, Any],
    *,
    subject: str,
    issuer: str,
    scopes: frozenset[str],
    next_path: str = "/ui/",
    name: str = "",
) -> Response[Any]:
    """Start a session for the user (``subject`` at ``issuer``, as ``api.tokens.user_id_of``
    names them; ``name`` shown for them if given) and redirect to ``next_path`` (a dashboard
    path; anything else: the start)."""
    sessions = ui_context(request).sessions
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        await sync_to_thread(sessions.end, old)
    sid = await sync_to_thread(sessions.start, subject, issuer, scopes, name)
    response: Response[Any] = Redirect(safe_next(next_path), status_code=303)
    response.set_cookie(session_cookie(request, sid, int(sessions.ttl.total_seconds())))
    return response


async def end_session(request: Request[Any, Any, Any]) -> Response[Any]:
    """Delete the session row (every process stops accepting the cookie) and the cookie."""
    sid = request.cookies.get(SESSION_COOKIE)
    if sid:
        await sync_to_thread(ui_context(request).sessions.end, sid)
    response: Response[Any] = Redirect("/ui/login", status_code=303)
    response.set_cookie(session_cookie(request, "", 0))
    return response
