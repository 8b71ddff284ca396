#!/bin/sh
# Disable the pre-migration plaintext listener at the init system.
#
#   disable-legacy-listener.sh [--root DIR] [--unit NAME]... [--env FILE]
#
#   --root DIR  operate on a system tree other than / (the installer's --root;
#               tests use a temporary root). Default /.
#   --unit NAME unit to revoke (repeatable). Default: LEGACY_UNITS from --env,
#               else "detector-legacy.service".
#   --env FILE  settings file (default ROOT/etc/detector-stack/legacy.env, optional)
#
# For each unit that exists: stop it (live system with systemd running only),
# disable it, and mask it (ROOT/etc/systemd/system/NAME -> /dev/null), so that
# neither a reboot, a dependency nor `systemctl start` can bring it back. A
# unit file placed by hand in /etc/systemd/system would block the mask; it is
# moved to ROOT/var/lib/detector-stack/legacy/ first and kept for the record.
# Says what it did for every unit. Idempotent: a second run reports "already masked".
# The firewall refuses the legacy port as well (host/nftables): two locks, one door.
set -eu

root=/
units=
env_file=
while [ $# -gt 0 ]; do
	case "$1" in
	--root) root=$2; shift ;;
	--unit) units="$units $2"; shift ;;
	--env) env_file=$2; shift ;;
	-h | --help) sed -n '2,19p' "$0"; exit 0 ;;
	*) echo "disable-legacy-listener: unknown argument: $1" >&2; exit 2 ;;
	esac
	shift
done
root=${root%/}
env_file=${env_file:-$root/etc/detector-stack/legacy.env}
if [ -z "$units" ]; then
	if [ -r "$env_file" ]; then
		# shellcheck disable=SC1090
		. "$env_file"
	fi
	units=${LEGACY_UNITS:-detector-legacy.service}
fi

live=0
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
	live=1 # systemd is PID 1 on this very system: stop and reload for real
fi
systemctl_root() { systemctl --root="${root:-/}" "$@"; }

say() { echo "legacy listener: $*"; }

for unit in $units; do
	case "$unit" in
	*/* | '' | -*) echo "disable-legacy-listener: bad unit name: $unit" >&2; exit 2 ;;
	*.*) ;;
	*) unit=$unit.service ;;
	esac
	admin=$root/etc/systemd/system/$unit
	if [ -L "$admin" ] && [ "$(readlink "$admin")" = /dev/null ]; then
		say "$unit already masked, nothing to do"
		continue
	fi
	found=
	for d in etc/systemd/system run/systemd/system usr/local/lib/systemd/system lib/systemd/system usr/lib/systemd/system; do
		if [ -e "$root/$d/$unit" ] || [ -L "$root/$d/$unit" ]; then
			found=$root/$d/$unit
			break
		fi
	done
	if [ -z "$found" ]; then
		say "no unit $unit on this host, nothing to disable"
		continue
	fi

	if [ "$live" = 1 ]; then
		systemctl stop "$unit" && say "stopped $unit"
	else
		say "$unit not stopped (not the running system, or systemd is not PID 1)"
	fi

	# Disable: remove every enablement symlink (the [Install] wiring and any hand-made link).
	if command -v systemctl >/dev/null 2>&1; then
		systemctl_root disable "$unit" >/dev/null 2>&1 || true
	fi
	for link in "$root"/etc/systemd/system/*.wants/"$unit" "$root"/etc/systemd/system/*.requires/"$unit"; do
		if [ -L "$link" ]; then rm -f "$link"; fi
	done
	say "disabled $unit"

	# Mask: a regular file in /etc/systemd/system blocks `systemctl mask`; keep it aside.
	if [ -f "$admin" ] && [ ! -L "$admin" ]; then
		keep=$root/var/lib/detector-stack/legacy
		mkdir -p "$keep"
		mv "$admin" "$keep/$unit"
		say "moved the unit file $admin to $keep/ (kept for the record)"
	elif [ -L "$admin" ]; then
		rm -f "$admin"
	fi
	mkdir -p "$root/etc/systemd/system"
	ln -s /dev/null "$admin"
	say "masked $unit ($admin -> /dev/null)"
	if [ "$live" = 1 ]; then
		systemctl daemon-reload
	fi
done

# On the live host, say whether anything still listens on the legacy port.
if [ -z "$root" ] && command -v ss >/dev/null 2>&1; then
	LEGACY_PORT=${LEGACY_PORT:-8000}
	fw_env=/etc/detector-stack/firewall.env
	if [ -r "$fw_env" ]; then
		# shellcheck disable=SC1090
		. "$fw_env"
	fi
	if ss -Hltn "sport = :$LEGACY_PORT" | grep -q .; then
		say "WARNING: something still listens on port $LEGACY_PORT (ss -ltnp 'sport = :$LEGACY_PORT'); the firewall refuses it"
	else
		say "nothing listens on port $LEGACY_PORT"
	fi
fi
