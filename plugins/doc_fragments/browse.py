# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The options that name a unit to browse, shared by snapshot_files and snapshot_diff."""

    DOCUMENTATION = r"""
options:
  encryption_identity:
    description:
      - The age identity file (private key, on the host running the module) that decrypts encrypted
        snapshots. Needed for encrypted snapshots only.
    type: path
  host:
    description: With O(snapshot=latest), only snapshots of this host.
    type: str
  unit:
    description: The unit, by id (V(volume:NAME), V(path:/P)) or by volume name or host path.
    type: str
    required: true
"""
