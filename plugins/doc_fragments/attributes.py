# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The attributes (check mode, diff mode, idempotency) that modules share word for word.

    A module names the ones that fit in extends_documentation_fragment (lifeboat.docker.attributes.no_diff)
    and writes under its own `attributes:` only what it says differently; ansible-doc merges both."""

    # A module that only reads: check mode and a second run change nothing.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    support: full
    description: Reads only.
  idempotent:
    support: full
    description: Reads only.
"""

    # Modules whose result is no before/after of anything.
    NO_DIFF = r"""
attributes:
  diff_mode:
    support: none
    description: Nothing to compare.
"""

    # An information module: reads only and always returns changed=false.
    INFO = r"""
attributes:
  check_mode:
    support: full
    description: Reads only; runs unchanged in check mode.
  diff_mode:
    support: none
    description: Nothing is changed, so nothing is compared.
  idempotent:
    support: full
    description: Reads only; always returns RV(ignore:changed=false).
"""
