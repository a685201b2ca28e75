#!/bin/sh
set -e
[ -f /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -A >/dev/null
user=${SSH_USER:-backup}
id "$user" >/dev/null 2>&1 || useradd -m -s /bin/sh "$user"
# A locked password makes sshd refuse the account; '*' keeps key logins possible.
usermod -p '*' "$user"
home=$(getent passwd "$user" | cut -d: -f6)
mkdir -p "$home/.ssh"
if [ -n "${SSH_AUTHORIZED_KEY:-}" ]; then printf '%s\n' "$SSH_AUTHORIZED_KEY" > "$home/.ssh/authorized_keys"; fi
if [ -f /etc/ssh/authorized_keys ]; then cat /etc/ssh/authorized_keys >> "$home/.ssh/authorized_keys"; fi
chown -R "$user:" "$home/.ssh"
chmod 700 "$home/.ssh"
if [ -f "$home/.ssh/authorized_keys" ]; then chmod 600 "$home/.ssh/authorized_keys"; fi
printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n' > /etc/ssh/sshd_config.d/lifeboat.conf
exec "$@"
