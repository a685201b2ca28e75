# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter of the cert_safekeeping role: one line per certificate for a person."""

from __future__ import annotations

from typing import Any


def cert_line(cert: dict[str, Any], warn_days: int = 30) -> str:
    """A certificate of lifeboat.docker.cert_info as: path, subject, SANs, issuer, expiry, key."""
    days = cert.get("days_left")
    if cert.get("expired"):
        when = f"EXPIRED {-days} days ago" if isinstance(days, int) else "EXPIRED"
    elif isinstance(days, int) and days < warn_days:
        when = f"EXPIRES IN {days} DAYS"
    else:
        when = f"{days} days left" if isinstance(days, int) else "expiry unknown"
    sans = ", ".join(s.replace("DNS:", "") for s in cert.get("sans") or []) or "no SANs"
    key = f"key {cert['key']}" if cert.get("key_matches") else "NO MATCHING KEY FOUND"
    return (f"{cert.get('path')}: {cert.get('subject')} [{sans}], issuer {cert.get('issuer')}, "
            f"not after {cert.get('not_after')} ({when}), {key}")


def cert_file_line(entry: dict[str, Any]) -> str:
    """A file of lifeboat.docker.cert_bundle's result: path, owner, mode, whether it was written."""
    return (f"{entry.get('path')}: {entry.get('uid')}:{entry.get('gid')} {entry.get('mode')}"
            f"{' (private key)' if entry.get('private_key') else ''}"
            f"{'' if entry.get('changed') else ' (already so)'}")


class FilterModule:
    """lifeboat.docker.cert_line and cert_file_line."""

    def filters(self) -> dict[str, Any]:
        return {"cert_line": cert_line, "cert_file_line": cert_file_line}
