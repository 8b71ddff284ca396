#!/bin/sh
# Install step (host/install-steps.txt): make sure the dedicated nginx log exists.
#
#   prepare-log.sh [--root DIR]
#
# fail2ban refuses to start a jail whose log file does not exist, and nginx creates the file only
# on its first start; without this, the detector jails would be down on a fresh VM until fail2ban
# is restarted after the stack's first `up`. The file is created empty, 0640 root:adm (as
# logrotate's `create` does), and never touched if it exists.
set -eu
root=/
while [ $# -gt 0 ]; do
	case "$1" in
	--root) root=$2; shift ;;
	*) echo "prepare-log: unknown argument: $1" >&2; exit 2 ;;
	esac
	shift
done
log=${root%/}/var/log/detector-stack/scoring.log
if [ -e "$log" ]; then
	exit 0
fi
install -d -m 0755 "$(dirname "$log")"
: >"$log"
chmod 0640 "$log"
chgrp adm "$log" 2>/dev/null || true
echo "prepare-log: created $log (empty, for fail2ban's detector jails)"
