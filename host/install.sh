#!/usr/bin/env bash
# The one installer of everything the VM needs from this repo. Idempotent: a second run changes
# nothing and says so.
#
#   host/install.sh [--root DIR] [--dry-run]
#
#   --root DIR  install into DIR instead of / (a temporary root for tests, an image being built)
#   --dry-run   say what would change, change nothing
#
# What it does, in order:
#   1. every line of host/manifest.txt (`source dest mode`: a repo file, its absolute path on
#      the host, its octal mode) is copied when the destination is missing or differs in
#      content or mode; parent directories are created 0755;
#   2. the host directories the Compose stack mounts are created (see STACK_DIRS);
#   3. every installed unit with an [Install] section is enabled (`systemctl --root`, which needs
#      no running systemd); on the live host systemd is reloaded first when a unit changed;
#   4. the steps in host/install-steps.txt run with `--root DIR` (and are only listed on
#      --dry-run); each says what it changed.
# Starting the stack is left to the operator: `systemctl enable --now detector-stack`.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
manifest=$repo/host/manifest.txt
steps=$repo/host/install-steps.txt
root=/
dry_run=false

while [[ $# -gt 0 ]]; do
  case "$1" in
    --root) root=${2:?--root needs a directory}; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -d "$root" ]] || { echo "install.sh: root $root is not a directory" >&2; exit 1; }
root=$(cd "$root" && pwd)
prefix=${root%/}  # "" for the real root, so paths print as the host will see them

# Host directories the Compose stack bind-mounts (path, mode, group): nginx's dedicated access
# log (fail2ban and logrotate read it), the ACME webroot certbot writes and nginx serves, and
# the key file's directory, readable by the detector's group (gid 10001, fixed in the
# Dockerfile) and no one else; setgid, so a key file `detectorctl keys` writes there as root
# belongs to that group too and the detector can read it after a reload. Docker would create missing ones at `up`, as root and 0755, but
# fail2ban and the certbot bootstrap need theirs before the first start.
STACK_DIRS=(
  "/var/log/detector-stack 0755 0"
  "/var/www/certbot 0755 0"
  "/etc/detector-stack/keys 2750 10001"
)

changed=0
say() { echo "install.sh: $*"; }
act() {  # description, command...: run it (or only say it on --dry-run) and count a change
  local what=$1; shift
  changed=$((changed + 1))
  if $dry_run; then say "would $what"; else "$@"; say "$what"; fi
}

# --- 1. files --------------------------------------------------------------------------------
# The whole manifest is checked before anything is touched: a bad line changes nothing.
declare -A seen=()
sources=() dests=() modes=()
line_no=0
while IFS= read -r line || [[ -n "$line" ]]; do
  line_no=$((line_no + 1))
  line=${line%%#*}
  source="" dest="" mode="" extra=""
  read -r source dest mode extra <<<"$line" || true
  [[ -n "$source" ]] || continue
  where="$manifest:$line_no"
  [[ -n "$mode" && -z "$extra" ]] || { echo "install.sh: $where: want 'source dest mode'" >&2; exit 1; }
  [[ "$dest" == /* ]] || { echo "install.sh: $where: destination $dest is not absolute" >&2; exit 1; }
  [[ "$mode" =~ ^0?[0-7]{3,4}$ ]] || { echo "install.sh: $where: mode $mode is not octal" >&2; exit 1; }
  [[ -f "$repo/$source" ]] || { echo "install.sh: $where: source $source is not a file in the repo" >&2; exit 1; }
  [[ -z "${seen[$dest]:-}" ]] || { echo "install.sh: $where: $dest is already installed by line ${seen[$dest]}" >&2; exit 1; }
  seen[$dest]=$line_no
  sources+=("$source") dests+=("$dest") modes+=("$(printf '%o' "0$mode")")
done <"$manifest"

step_lines=()
if [[ -f "$steps" ]]; then
  while IFS= read -r line || [[ -n "$line" ]]; do
    line=${line%%#*}
    read -r -a step <<<"$line" || true
    [[ ${#step[@]} -gt 0 ]] || continue
    [[ -x "$repo/${step[0]}" ]] || { echo "install.sh: $steps: ${step[0]} is not an executable in the repo" >&2; exit 1; }
    step_lines+=("${step[*]}")
  done <"$steps"
fi

installed_units=()
unit_changed=false
for i in "${!dests[@]}"; do
  source=${sources[$i]} dest=${dests[$i]} want_mode=${modes[$i]}
  target=$prefix$dest
  case "$dest" in
    /etc/systemd/system/*.service|/etc/systemd/system/*.timer|/etc/systemd/system/*.socket|/etc/systemd/system/*.path)
      installed_units+=("$dest $source") ;;
  esac
  if [[ -f "$target" && ! -L "$target" ]] && cmp -s "$repo/$source" "$target"; then
    if [[ "$(stat -c %a "$target")" != "$want_mode" ]]; then
      act "set mode 0$want_mode on $dest" chmod "$want_mode" "$target"
    fi
    continue
  fi
  verb=install; [[ -e "$target" || -L "$target" ]] && verb=update
  [[ "$dest" == /etc/systemd/system/* ]] && unit_changed=true
  # Copied beside the target, then renamed over it: a reader never sees half a file.
  act "$verb $dest (from $source, mode 0$want_mode)" \
    bash -c 'install -d -m 0755 "$(dirname "$2")" && install -m "$3" "$1" "$2.install-tmp" && mv -f "$2.install-tmp" "$2"' \
    _ "$repo/$source" "$target" "$want_mode"
done

# --- 2. directories ---------------------------------------------------------------------------
for entry in "${STACK_DIRS[@]}"; do
  read -r dir mode group <<<"$entry"
  if [[ ! -d "$prefix$dir" ]]; then
    act "create directory $dir (mode $mode, group $group)" install -d -m "$mode" -g "$group" "$prefix$dir"
  fi
done

# --- 3. units ---------------------------------------------------------------------------------
if [[ ${#installed_units[@]} -gt 0 ]]; then
  command -v systemctl >/dev/null || { echo "install.sh: systemctl is missing (install systemd)" >&2; exit 1; }
  live=false
  [[ -z "$prefix" && -d /run/systemd/system ]] && live=true
  if $live && $unit_changed && ! $dry_run; then
    systemctl daemon-reload
    say "reloaded systemd (unit files changed)"
  fi
  for entry in "${installed_units[@]}"; do
    read -r dest source <<<"$entry"
    unit=$(basename "$dest")
    # A unit with no [Install] section is started by another (a timer's service): not enabled.
    grep -q '^\[Install\]' "$repo/$source" || continue
    if [[ "$(systemctl --root="$root" is-enabled "$unit" 2>/dev/null || true)" == enabled ]]; then
      continue
    fi
    act "enable $unit" systemctl --root="$root" --quiet enable "$unit"
  done
fi

# --- 4. steps --------------------------------------------------------------------------------
for step_line in "${step_lines[@]}"; do
  read -r -a step <<<"$step_line"
  if $dry_run; then
    say "would run ${step[*]} --root $root"
  else
    "$repo/${step[0]}" "${step[@]:1}" --root "$root"
  fi
done

if [[ $changed -eq 0 ]]; then
  say "nothing to change: $root is up to date"
elif $dry_run; then
  say "dry run: $changed change(s) listed, none made"
else
  say "$changed change(s) made in $root"
fi
