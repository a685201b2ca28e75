"""Stand-in for pip's get-pip.py, for ansible-test on machines that cannot download it.

ansible-test creates each sanity test's virtualenv without pip, then runs a get-pip bootstrap
script it downloads from a host these machines cannot reach; scripts/sanity.sh puts this file
in ansible-test's cache in its place. Like get-pip.py it takes pip-install arguments: it puts
the interpreter's bundled pip in place with ensurepip, then installs what it was asked for from
the package index.
"""

from __future__ import annotations

import ensurepip
import os
import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

# ensurepip sets PIP_CONFIG_FILE=/dev/null in this process; the install below must see the
# machine's pip configuration (its CA bundle, its index), so it gets the environment we had.
environ = dict(os.environ)
ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args], env=environ))
