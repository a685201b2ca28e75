"""The pure parts of the SFTP store: URLs, the ssh command, ssh's complaints, the SFTP wire format.

The channel, reader and writer run against a real OpenSSH server in
tests/integration/test_store_sftp.py (no sftp-server exists on the test host itself).
"""

from __future__ import annotations

import struct

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores import sftp as sf
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import StoreError

# ssh's stderr, as OpenSSH 9.2 prints it (captured from the test bench's sshd)
UNKNOWN_HOST = ("No ED25519 host key is known for [127.0.0.1]:32771 and you have requested strict checking.\n"
                "Host key verification failed.\n")
CHANGED_HOST = ("@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
                "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
                "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
                "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n"
                "Host key for [127.0.0.1]:32771 has changed and you have requested strict checking.\n"
                "Host key verification failed.\n")
REFUSED_KEY = "lbbackup@127.0.0.1: Permission denied (publickey).\n"
OPEN_KEY = ("@         WARNING: UNPROTECTED PRIVATE KEY FILE!          @\n"
            "Permissions 0644 for 'id_open' are too open.\n"
            "Load key \"id_open\": bad permissions\n"
            "lbbackup@127.0.0.1: Permission denied (publickey).\n")
CONN_REFUSED = "ssh: connect to host 127.0.0.1 port 1: Connection refused\n"
NO_HOST = "ssh: Could not resolve hostname nosuchhost.invalid: Name or service not known\n"
TIMEOUT = "ssh: connect to host 10.255.255.1 port 22: Connection timed out\n"
LOST = "Connection to 127.0.0.1 closed by remote host.\n"


# -- URLs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("url, user, host, port, path, shown", [
    ("sftp://backup@nas.example.org/srv/lifeboat", "backup", "nas.example.org", 22, "/srv/lifeboat",
     "sftp://backup@nas.example.org/srv/lifeboat"),
    ("sftp://backup@127.0.0.1:2222/srv/lifeboat/", "backup", "127.0.0.1", 2222, "/srv/lifeboat",
     "sftp://backup@127.0.0.1:2222/srv/lifeboat"),
    ("sftp://nas//srv//x", None, "nas", 22, "/srv/x", "sftp://nas/srv/x"),
    ("sftp://u@[::1]:22/~/backups", "u", "[::1]", 22, "backups", "sftp://u@[::1]:22/~/backups"),
])
def test_sftp_urls(url, user, host, port, path, shown):
    target = sf.SftpTarget(url)
    assert (target.user, target.host, target.port, target.path, target.url) == (user, host, port, path, shown)


@pytest.mark.parametrize("url, complaint", [
    ("sftp://backup:hunter2@nas/srv/x", "holds a password"),
    ("sftp://backup@nas", "names no directory"),
    ("sftp://backup@nas/~", "names no directory"),
    ("sftp://-oProxyCommand=x/srv", "cannot start with '-'"),
    ("sftp://backup@nas:99999/x", "out of range"),
    ("sftp:/nas/x", "not a valid sftp URL"),
])
def test_bad_sftp_urls_are_refused_without_showing_a_password(url, complaint):
    with pytest.raises(StoreError, match=complaint) as err:
        sf.SftpTarget(url)
    assert "hunter2" not in str(err.value)


def test_known_hosts_names_carry_the_port_unless_22():
    assert sf.SftpTarget("sftp://u@h/x").known_hosts_name == "h"
    assert sf.SftpTarget("sftp://u@[::1]:2222/x").known_hosts_name == "[::1]:2222"


# -- the ssh command -------------------------------------------------------------------------
def test_ssh_command_never_prompts_and_checks_host_keys():
    cmd = sf.ssh_command(sf.SftpTarget("sftp://backup@nas:2222/srv/x"),
                         {"ssh_identity_file": "/k/id", "ssh_known_hosts_file": "/k/known_hosts"})
    for opt in ("-oBatchMode=yes", "-oStrictHostKeyChecking=yes", "-oUserKnownHostsFile=/k/known_hosts",
                "-oIdentityFile=/k/id", "-oIdentitiesOnly=yes", f"-oConnectTimeout={sf.CONNECT_TIMEOUT}",
                f"-oServerAliveInterval={sf.ALIVE_INTERVAL}"):
        assert opt in cmd
    assert cmd[-6:] == ["-l", "backup", "-s", "--", "nas", "sftp"]
    assert cmd[cmd.index("-p") + 1] == "2222"


def test_ssh_command_without_options_uses_the_users_keys_and_known_hosts():
    cmd = sf.ssh_command(sf.SftpTarget("sftp://nas/srv/x"), {"ssh_identity_file": None, "ssh_known_hosts_file": None})
    assert not [arg for arg in cmd if "IdentityFile" in arg or "KnownHostsFile" in arg or arg == "-l"]
    assert cmd[-3:] == ["--", "nas", "sftp"]


# -- ssh's complaints ------------------------------------------------------------------------
TARGET = sf.SftpTarget("sftp://lbbackup@127.0.0.1:32771/srv/x")
OPTIONS = {"ssh_identity_file": "/k/id", "ssh_known_hosts_file": "/k/known_hosts"}


@pytest.mark.parametrize("stderr, wanted", [
    (UNKNOWN_HOST, ["is not in /k/known_hosts", "ssh-keyscan -p 32771 127.0.0.1 >> /k/known_hosts"]),
    (CHANGED_HOST, ["has CHANGED", "ssh-keygen -R '[127.0.0.1]:32771' -f /k/known_hosts"]),
    (REFUSED_KEY, ["refused the key /k/id for lbbackup", "authorized_keys"]),
    (OPEN_KEY, ["permissions are too open", "chmod 600"]),
    (CONN_REFUSED, ["connection to 127.0.0.1 port 32771 refused", "SSH server running"]),
    (NO_HOST, ["cannot resolve the host name"]),
    (TIMEOUT, ["timed out", "firewalls"]),
    (LOST, ["ended (Connection to 127.0.0.1 closed by remote host.)", "removes partial uploads"]),
    ("", ["ended (ssh exited with 255)"]),
])
def test_ssh_failures_are_explained(stderr, wanted):
    message = sf.explain_ssh_failure(stderr, 255, TARGET, OPTIONS)
    for part in wanted:
        assert part in message, message


def test_without_a_known_hosts_option_the_users_file_is_named():
    message = sf.explain_ssh_failure(UNKNOWN_HOST, 255, TARGET, {})
    assert "~/.ssh/known_hosts" in message


# -- the wire format -------------------------------------------------------------------------
def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def attrs(size: int | None = None, perms: int | None = None, mtime: int | None = None) -> bytes:
    flags, body = 0, b""
    if size is not None:
        flags |= sf.A_SIZE
        body += struct.pack(">Q", size)
    flags |= sf.A_UIDGID
    body += u32(1000) + u32(1000)
    if perms is not None:
        flags |= sf.A_PERMISSIONS
        body += u32(perms)
    if mtime is not None:
        flags |= sf.A_ACMODTIME
        body += u32(mtime - 1) + u32(mtime)
    flags |= sf.A_EXTENDED
    body += u32(1) + sf.pack_str("x@example") + sf.pack_str("y")
    return u32(flags) + body


def test_version_reply_and_extensions():
    payload = u32(3) + sf.pack_str(sf.POSIX_RENAME) + sf.pack_str("1") + sf.pack_str("limits@openssh.com") + sf.pack_str("1")
    assert sf.parse_version(payload) == (3, {sf.POSIX_RENAME: b"1", "limits@openssh.com": b"1"})


def test_name_reply_with_attributes():
    payload = (u32(2) + sf.pack_str("ab") + sf.pack_str("drwxr-x--- ab") + attrs(perms=0o40750, mtime=1_700_000_000)
               + sf.pack_str(b"f\xff") + sf.pack_str("-rw-r----- f") + attrs(size=5, perms=0o100640))
    (name1, attrs1), (name2, attrs2) = sf.parse_names(payload)
    assert name1 == "ab" and sf.is_dir(attrs1) and attrs1["mtime"] == 1_700_000_000
    assert name2 == "f\udcff" and not sf.is_dir(attrs2) and attrs2["size"] == 5
    assert sf.pack_str(name2) == sf.pack_str(b"f\xff"), "a name that is not UTF-8 must go back to the server unchanged"


def test_status_reply():
    status = sf.parse_status(u32(sf.NO_SUCH_FILE) + sf.pack_str("No such file") + sf.pack_str("en"))
    assert status.code == sf.NO_SUCH_FILE and str(status) == "no such file: No such file"
    assert sf.parse_status(u32(sf.OK)).code == sf.OK, "version 3 servers may omit the message"


def test_a_string_beyond_the_packet_is_refused():
    with pytest.raises(StoreError, match="malformed"):
        sf.Unpacker(u32(100) + b"short").string()
