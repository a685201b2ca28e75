# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""_procs: /proc of this host, read for real with processes started here."""

import os
import subprocess
import sys

from ansible_collections.lifeboat.docker.plugins.module_utils._common.procs import (
    children,
    cmdline,
    parent_pid,
    pid_alive,
    process_start,
    stat_fields_of,
)


def test_stat_fields_split_after_the_last_parenthesis():
    line = b"42 (a) b (c)) S 7 42 42 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 123456 1 2\n"
    fields = stat_fields_of(line)
    assert fields[0] == b"S" and fields[1] == b"7" and fields[19] == b"123456"


def test_a_running_child_is_seen_and_gone_after_it_ends():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "marker-arg"])
    try:
        assert pid_alive(child.pid)
        start = process_start(child.pid)
        assert start is not None and start.isdigit()
        assert parent_pid(child.pid) == os.getpid()
        assert child.pid in children().get(os.getpid(), [])
        assert "marker-arg" in cmdline(child.pid)
        child.kill()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # a zombie now: ended, not reaped
        assert process_start(child.pid) is None
        assert pid_alive(child.pid)  # signal 0 still reaches a zombie
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid)
    assert process_start(child.pid) is None and parent_pid(child.pid) is None and cmdline(child.pid) == ""


def test_own_process_start_is_stable():
    start = process_start(os.getpid())
    assert start is not None and process_start(os.getpid()) == start
