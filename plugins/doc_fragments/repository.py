# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The repository and store options shared by the snapshot modules."""

    DOCUMENTATION = r"""
options:
  repository:
    description:
      - Where snapshots are kept, chosen by the URL.
      - A local directory (an absolute path, or C(file:///PATH)); it is created with its marker
        file on the first snapshot.
      - C(sftp://USER@HOST[:PORT]/PATH) over OpenSSH's C(ssh) client, with key authentication
        (O(ssh_identity_file) or the user's keys and agent) and the host key checked against
        known_hosts (O(ssh_known_hosts_file) or the user's); an unknown host key is an error.
      - C(s3://BUCKET/PREFIX) on S3-compatible object storage (AWS, MinIO, Ceph, OBS), see
        O(endpoint_url), O(access_key), O(secret_key), O(region). Needs the Python library boto3
        on the Docker host (Debian package python3-boto3).
      - C(rclone://REMOTE/PATH) through a remote of rclone's configuration (O(rclone_config)), which
        brings WebDAV, Dropbox, Seafile, Google Drive and dozens more. Needs the rclone command.
      - Data flows from the Docker host straight to the store, without a staging copy.
      - The format is described in the collection's C(docs/repository-format.md).
    type: str
    default: /var/backups/lifeboat
  endpoint_url:
    description:
      - For C(s3://) repositories, the URL of an S3-compatible service other than AWS, for example
        C(https://minio.example.org:9000).
      - Falls back to E(AWS_ENDPOINT_URL_S3) or E(AWS_ENDPOINT_URL).
    type: str
  access_key:
    description:
      - For C(s3://) repositories, the access key id. Falls back to E(AWS_ACCESS_KEY_ID), then to
        boto3's own lookup (its configuration files, instance roles).
    type: str
  secret_key:
    description:
      - For C(s3://) repositories, the secret access key. Falls back to E(AWS_SECRET_ACCESS_KEY).
      - Never shown in results or messages.
    type: str
  session_token:
    description:
      - For C(s3://) repositories, a session token of temporary credentials. Falls back to
        E(AWS_SESSION_TOKEN).
    type: str
  region:
    description:
      - For C(s3://) repositories, the region. Falls back to E(AWS_REGION) or E(AWS_DEFAULT_REGION).
    type: str
  ssh_identity_file:
    description:
      - For C(sftp://) repositories, the private key file to authenticate with. Without it, OpenSSH
        uses the user's keys, agent and C(~/.ssh/config).
    type: path
  ssh_known_hosts_file:
    description:
      - For C(sftp://) repositories, the known_hosts file that must list the server's host key.
        Without it, the user's known_hosts. A host key that is not listed fails the module; add it
        with C(ssh-keyscan) after checking its fingerprint.
    type: path
  rclone_config:
    description:
      - For C(rclone://) repositories, the rclone configuration file that defines the remote.
        Falls back to E(RCLONE_CONFIG), then to rclone's default (C(~/.config/rclone/rclone.conf)).
    type: path
  upload_limit:
    description:
      - The most bytes a second this module uploads into the repository (every store; the local one
        too, e.g. on a network file system), so that a backup leaves room on the host's link for
        the services it runs. A number of bytes, or with C(K), C(M) or C(G) (KiB, MiB, GiB), e.g.
        V(512K) or V(10M); at least 1024. Without it, no limit.
    type: str
notes:
  - Journals of stopped containers live in C(/var/lib/lifeboat/journal) (or E(LIFEBOAT_STATE_DIR)).
    Every module that takes a repository and talks to the Docker engine first starts again the
    containers that an earlier run, killed before it could, left stopped; its C(repaired) result
    lists them.
"""
