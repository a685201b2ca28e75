# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The repository option shared by the snapshot modules."""

    DOCUMENTATION = r"""
options:
  repository:
    description:
      - Where snapshots are kept. In this version a local directory (an absolute path, or
        C(file:///PATH)); it is created with its marker file on the first snapshot.
      - The format is described in the collection's C(docs/repository-format.md).
    type: str
    default: /var/backups/lifeboat
notes:
  - Journals of stopped containers live in C(/var/lib/lifeboat/journal) (or E(LIFEBOAT_STATE_DIR)).
    Every module that takes a repository and talks to the Docker engine first starts again the
    containers that an earlier run, killed before it could, left stopped; its C(repaired) result
    lists them.
"""
