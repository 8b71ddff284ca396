#!/bin/sh
# Render and load the host firewall baseline (table inet detector-host).
#
#   apply-firewall.sh [--dry-run] [--env FILE] [--template FILE]
#
#   --dry-run   print the rendered ruleset and check it with `nft -c`; change nothing
#   --env FILE  settings (default /etc/detector-stack/firewall.env, optional):
#                 DETECTOR_INTERNAL_PORT  detector's port inside the stack (default 8080)
#                 LEGACY_PORT             pre-migration plaintext listener (default 8000)
#
# Only this table is replaced, atomically; Docker's and fail2ban's tables stay.
set -eu

here=$(dirname "$0")
env_file=/etc/detector-stack/firewall.env
template=
dry_run=0
while [ $# -gt 0 ]; do
	case "$1" in
	--dry-run) dry_run=1 ;;
	--env) env_file=$2; shift ;;
	--template) template=$2; shift ;;
	-h | --help) sed -n '2,12p' "$0"; exit 0 ;;
	*) echo "apply-firewall: unknown argument: $1" >&2; exit 2 ;;
	esac
	shift
done

# The installed copy sits next to its template; the repo copy too.
if [ -z "$template" ]; then
	template=$here/detector-firewall.nft.template
fi
[ -r "$template" ] || { echo "apply-firewall: template not found: $template" >&2; exit 1; }

if [ -r "$env_file" ]; then
	# shellcheck disable=SC1090
	. "$env_file"
fi
DETECTOR_INTERNAL_PORT=${DETECTOR_INTERNAL_PORT:-8080}
LEGACY_PORT=${LEGACY_PORT:-8000}

for p in "$DETECTOR_INTERNAL_PORT" "$LEGACY_PORT"; do
	case "$p" in
	'' | *[!0-9]*) echo "apply-firewall: not a port number: '$p'" >&2; exit 2 ;;
	esac
	if [ "$p" -lt 1 ] || [ "$p" -gt 65535 ]; then
		echo "apply-firewall: port out of range: $p" >&2; exit 2
	fi
	case "$p" in
	22 | 80 | 443) echo "apply-firewall: refusing to refuse an allowed port: $p" >&2; exit 2 ;;
	esac
done

command -v envsubst >/dev/null || { echo "apply-firewall: envsubst (gettext-base) is missing" >&2; exit 1; }
NFT=${NFT:-nft}
command -v "$NFT" >/dev/null || { echo "apply-firewall: $NFT (nftables) is missing" >&2; exit 1; }

export DETECTOR_INTERNAL_PORT LEGACY_PORT
# Single quotes on purpose: envsubst gets the list of variable names, not their values.
# shellcheck disable=SC2016
ruleset=$(envsubst '${DETECTOR_INTERNAL_PORT} ${LEGACY_PORT}' <"$template")

if [ "$dry_run" = 1 ]; then
	printf '%s\n' "$ruleset"
	printf '%s\n' "$ruleset" | "$NFT" -c -f - ||
		{ echo "apply-firewall: ruleset does not pass 'nft -c'" >&2; exit 1; }
	echo "# apply-firewall: dry run, ruleset checked, nothing applied" >&2
	exit 0
fi

printf '%s\n' "$ruleset" | "$NFT" -c -f -
printf '%s\n' "$ruleset" | "$NFT" -f -
echo "apply-firewall: table inet detector-host loaded (internal port $DETECTOR_INTERNAL_PORT, legacy port $LEGACY_PORT refused)"
