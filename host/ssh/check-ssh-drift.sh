#!/bin/sh
# Report drift of the effective sshd configuration from the key-only posture.
#
#   check-ssh-drift.sh [--config FILE] [--hostkey FILE]
#
#   --config   sshd main config to evaluate (default /etc/ssh/sshd_config; its
#              Include lines, e.g. sshd_config.d/*.conf, are followed by sshd)
#   --hostkey  host key to load (only needed where the config has no readable key)
#
# Method: asks sshd itself (`sshd -T`), which prints the settings sshd would
# actually use after Include files, first-match-wins and defaults. This is
# done for the default connection and for a root and a non-root user from an
# outside address, so a `Match` block that re-enables passwords is caught.
# Exit 0: no drift. Exit 1: drift (each finding printed). Exit 2: cannot check.
set -eu

config=/etc/ssh/sshd_config
hostkey=
while [ $# -gt 0 ]; do
	case "$1" in
	--config) config=$2; shift ;;
	--hostkey) hostkey=$2; shift ;;
	-h | --help) sed -n '2,15p' "$0"; exit 0 ;;
	*) echo "check-ssh-drift: unknown argument: $1" >&2; exit 2 ;;
	esac
	shift
done

SSHD=${SSHD:-sshd}
command -v "$SSHD" >/dev/null 2>&1 || { echo "check-ssh-drift: sshd (openssh-server) is missing" >&2; exit 2; }
[ -r "$config" ] || { echo "check-ssh-drift: cannot read $config" >&2; exit 2; }
# sshd -T refuses to run without its privilege-separation directory; ssh.service
# normally creates it (RuntimeDirectory=sshd), this keeps the check usable when
# sshd is stopped.
[ -d /run/sshd ] || mkdir -m 0755 /run/sshd

# Expected effective values (sshd -T prints lower-case keywords).
# permitrootlogin: prohibit-password is printed as its older alias without-password.
expected='passwordauthentication no
kbdinteractiveauthentication no
permitemptypasswords no
pubkeyauthentication yes
authenticationmethods publickey
permitrootlogin without-password|prohibit-password|no
maxauthtries 1|2|3'

# Connection contexts: default, then root and an ordinary user from outside.
contexts='-
user=root,host=drift-check.invalid,addr=203.0.113.9
user=operator,host=drift-check.invalid,addr=203.0.113.9'

tmp=$(mktemp)
findings=$(mktemp)
trap 'rm -f "$tmp" "$findings"' EXIT
for ctx in $contexts; do
	set -- -T -f "$config"
	[ -n "$hostkey" ] && set -- "$@" -h "$hostkey"
	[ "$ctx" != - ] && set -- "$@" -C "$ctx"
	if ! "$SSHD" "$@" >"$tmp" 2>&1; then
		echo "check-ssh-drift: sshd -T failed for context '$ctx':" >&2
		cat "$tmp" >&2
		exit 2
	fi
	label=$([ "$ctx" = - ] && echo default || echo "$ctx")
	echo "$expected" | while read -r key allowed; do
		actual=$(awk -v k="$key" '$1 == k { $1 = ""; sub(/^ /, ""); print; exit }' "$tmp")
		if ! echo "|$allowed|" | grep -qF "|$actual|"; then
			echo "DRIFT [$label] $key is '$actual', expected $allowed"
		fi
	done >>"$findings"
done
if [ -s "$findings" ]; then
	cat "$findings"
	echo "check-ssh-drift: FAIL: effective sshd config ($config) drifted from key-only login"
	exit 1
fi
echo "check-ssh-drift: OK: key-only login in effect ($config; contexts: default, root, non-root)"
