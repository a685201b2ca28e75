# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Notifications: Apprise URL lists and healthchecks.io-style dead-man pings.

Pure (no I/O): mask(), secrets_in(), scrub(), truncate(), failures(), already_notified(). Effects: send() (through the Apprise
library, which brings the clients for e-mail, ntfy, Slack, Matrix, Gotify, webhooks and more) and
ping() (one plain HTTP request with the standard library).

This file imports nothing from Ansible on purpose: the module lifeboat.docker.notify uses it on
the controller, and the role lifeboat.docker.schedule installs it beside its OnFailure helper
(roles/schedule/files/lifeboat_on_failure.py), which must work when Ansible itself does not.

Secrets: a notification URL carries its credentials (a password, a token, a topic), so a URL is
never shown as given: mask() keeps the scheme and a host name, and scrub() takes every part of
every URL out of a text (an error message of a client) before it is returned or printed.
"""

from __future__ import annotations

import re
import socket
import urllib.error
import urllib.parse
import urllib.request

# healthchecks.io keeps the first 100 kB of a ping's body; the summary is far smaller.
PING_BODY_LIMIT = 100_000
MASK = "***"


def mask(url: str) -> str:
    """URL as it may be shown: scheme and host name only (a host without a dot, such as the bot
    token of tgram:// or the topic of ntfy://, is a secret too and is masked)."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
    except ValueError:
        return MASK
    scheme = parts.scheme or "?"
    try:
        host, port = parts.hostname or "", parts.port
    except ValueError:  # "host:port" that is no port, such as a Telegram bot token
        return f"{scheme}://{MASK}/{MASK}"
    shown = host if ("." in host or host == "localhost" or ":" in host) else (MASK if host else "")
    if shown and port:
        shown += f":{port}"
    rest = parts.path not in ("", "/") or parts.query or parts.fragment or parts.username
    return f"{scheme}://{shown}" + (f"/{MASK}" if rest else "")


def secrets_in(url: str) -> list[str]:
    """The parts of URL that may be secret, longest first (for scrub)."""
    found = {url.strip()}
    try:
        parts = urllib.parse.urlsplit(url.strip())
    except ValueError:
        return sorted(found, key=len, reverse=True)
    for value in (parts.username, parts.password, parts.hostname if parts.hostname and "." not in parts.hostname else None,
                  parts.query, parts.fragment):
        if value:
            found.add(value)
            found.add(urllib.parse.unquote(value))
    # the user, password and token parts of the network location, also where they are no valid port
    found.update(piece for piece in re.split(r"[:@]", parts.netloc) if len(piece) >= 4 and "." not in piece)
    for segment in parts.path.split("/"):
        if len(segment) >= 4:
            found.add(segment)
            found.add(urllib.parse.unquote(segment))
    for _key, values in urllib.parse.parse_qs(parts.query).items():
        found.update(v for v in values if len(v) >= 4)
    return sorted((s for s in found if s), key=len, reverse=True)


def scrub(text: str, urls: list[str]) -> str:
    """TEXT with every secret part of URLS replaced by ***."""
    out = str(text)
    for url in urls:
        out = out.replace(url.strip(), mask(url)) if url.strip() else out
        for secret in secrets_in(url):
            out = out.replace(secret, MASK)
    return out


def truncate(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 40].decode("utf-8", "ignore") + "\n[... cut to fit the limit ...]"


def send(urls: list[str], title: str, body: str) -> list[dict]:
    """Send TITLE and BODY to each Apprise URL on its own, so that one broken target is named and
    does not stop the others. Returns one {target, ok, error} per URL (target masked)."""
    try:
        import apprise  # pylint: disable=import-outside-toplevel
    except ImportError:
        reason = ("the Python library apprise is not installed where notifications are sent: install "
                  "Debian's package apprise (the role lifeboat.docker.schedule does on the control node) "
                  "or run scripts/venv.sh for the controller's virtual environment")
        return [{"target": mask(u), "ok": False, "error": reason} for u in urls]
    results = []
    for url in urls:
        sender = apprise.Apprise()
        if not sender.add(url):
            results.append({"target": mask(url), "ok": False,
                            "error": "Apprise does not understand this URL (see https://github.com/caronc/apprise/wiki)"})
            continue
        with apprise.LogCapture(level=apprise.logging.WARNING) as captured:
            try:
                ok = bool(sender.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT))
                log = captured.getvalue()
            except Exception as exc:  # pylint: disable=broad-except  # a client's own bug: report it
                ok, log = False, f"{type(exc).__name__}: {exc}"
        error = "" if ok else (" ".join(line.split(" - ", 2)[-1].strip() for line in log.splitlines() if line.strip())
                               or "the notification was not accepted (no reason given)")
        results.append({"target": mask(url), "ok": ok, "error": scrub(error, [url])})
    return results


def ping(url: str, body: str = "", timeout: float = 10.0) -> dict:
    """One dead-man ping: GET URL, or POST BODY to it (healthchecks.io shows the body with the
    ping). Any 2xx answer counts. Returns {target, ok, error} (target masked)."""
    data = truncate(body, PING_BODY_LIMIT).encode("utf-8") if body else None
    request = urllib.request.Request(url.strip(), data=data, method="POST" if data else "GET",
                                     headers={"User-Agent": "lifeboat.docker"})
    if data:
        request.add_header("Content-Type", "text/plain; charset=utf-8")
    try:
        # the standard library's opener, not Ansible's open_url: this file must work without Ansible
        with urllib.request.build_opener().open(request, timeout=timeout) as answer:
            answer.read(1024)
            status = answer.status
    except urllib.error.HTTPError as exc:
        return {"target": mask(url), "ok": False, "error": f"the ping was answered with HTTP {exc.code} {exc.reason}"}
    except (urllib.error.URLError, socket.timeout, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return {"target": mask(url), "ok": False,
                "error": scrub(f"the ping failed: {reason}", [url])}
    if not 200 <= status < 300:
        return {"target": mask(url), "ok": False, "error": f"the ping was answered with HTTP {status}"}
    return {"target": mask(url), "ok": True, "error": ""}


def failures(results: list[dict]) -> list[str]:
    """'TARGET: ERROR' of each result that failed."""
    return [f"{r['target']}: {r['error']}" for r in results if not r["ok"]]


_MARKER = re.compile(r"lifeboat-notified: failure")


def already_notified(journal: str) -> bool:
    """Whether a run's output says that the backup role sent its failure notification itself and
    no host of the run was unreachable (the role cannot speak for a host it did not reach)."""
    return bool(_MARKER.search(journal)) and "UNREACHABLE!" not in journal
