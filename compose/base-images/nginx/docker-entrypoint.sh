#!/bin/sh
# Same contract as the official image's entrypoint: when the command is nginx, run the
# scripts in /docker-entrypoint.d (here: render the templates), then exec the command.
set -e

if [ "$1" = "nginx" ] || [ "$1" = "nginx-debug" ]; then
    for script in /docker-entrypoint.d/*.sh; do
        [ -f "$script" ] || continue
        echo "$0: Running $script"
        "$script"
    done
    echo "$0: Configuration complete; ready for start up"
fi

exec "$@"
