"""Which browser tab a session is, across reloads: a token the tab keeps in its URL (``?tab=``).

A browser reload ends the Streamlit session and ``st.session_state`` with it; the URL's query
parameters survive. So each tab keeps a random token there (:func:`claim` at a session's first run):
after a reload the new session finds it and is the same tab again. The token names the owner of the
tab's edits (undo still reaches the edits made before the reload, and the growth it started is not
"another tab's") and the starter of its jobs (a job it started reads as its own, with its Stop button,
not as "started in another tab").

A new tab opened on the app's address, a bookmark or a page link has no token and gets a new one. A tab
opened from a copied address brings the token along: while the tab it was copied from is still open
(its session is connected), the copy gets a token of its own, so the two stay two tabs; a copy opened
after the first tab closed reads as that tab, as a reload would.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, MutableMapping

#: The query parameter that holds the token.
TAB_PARAM = "tab"
#: A token as :func:`new_token` makes them (anything else in the URL is replaced).
TOKEN = re.compile(r"[0-9a-f]{8}")
#: Tokens handed out in this process, each with the session that holds it now.
_holders: dict[str, str] = {}
_lock = threading.Lock()
#: Past this many tokens, those of sessions no longer connected are forgotten.
_KEEP = 10_000


def new_token() -> str:
    """A fresh token: 8 hex digits."""
    return uuid.uuid4().hex[:8]


def owner_of(token: str) -> str:
    """The owner of the edits made in the tab with ``token`` (``app:`` and the token)."""
    return f"app:{token}"


def claim(
    wanted: str | None,
    session: str,
    alive: Callable[[str], bool],
    holders: MutableMapping[str, str] | None = None,
) -> str:
    """The token of ``session``: ``wanted`` (the URL's) when it is one and no other connected session
    holds it (``alive(session_id)``); else a new one. ``holders`` maps tokens to their sessions
    (default: this process's)."""
    held = _holders if holders is None else holders
    with _lock:
        holder = held.get(wanted) if wanted else None
        if not wanted or not TOKEN.fullmatch(wanted) or (holder not in (None, session) and alive(holder)):
            wanted = new_token()
        if len(held) > _KEEP:
            for token, other in list(held.items()):
                if not alive(other):
                    del held[token]
        held[wanted] = session
    return wanted


def session_alive(session_id: str) -> bool:
    """Whether the Streamlit session ``session_id`` is connected to a browser now (False where no
    served app runs, as under AppTest)."""
    try:
        from streamlit.runtime import Runtime

        return Runtime.instance().is_active_session(session_id) is True
    except RuntimeError:  # no runtime: nothing else is connected
        return False


def current_session() -> str:
    """This script run's Streamlit session id ("" outside one)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else ""
