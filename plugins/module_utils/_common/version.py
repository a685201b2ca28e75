# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""The collection's version, recorded in manifests (a unit test keeps it equal to galaxy.yml)."""

COLLECTION_VERSION = "0.1.0"
