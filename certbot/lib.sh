# shellcheck shell=bash disable=SC2034  # settings defined here are used by the scripts sourcing it
# Shared by certbot/bootstrap and certbot/renew: configuration, and the two commands that act on
# the world (run certbot, reload nginx). Sourced, not executed.
#
# Configuration lives in one place, the Compose project's env file (compose/.env, next to
# compose.yaml; see compose/.env.example), which nginx and the certbot container read too. Only the
# settings below are read from it (never the API key), and the environment wins over the file, as
# with docker-compose itself:
#
#   DETECTOR_HOSTNAME         the certificate's name: the one hostname clients use (required)
#   DETECTOR_ACME_EMAIL       the ACME account's contact for expiry notices (required to issue)
#   DETECTOR_ACME_SERVER      ACME directory URL; default Let's Encrypt production. Staging:
#                             https://acme-staging-v02.api.letsencrypt.org/directory
#   DETECTOR_ACME_CA_BUNDLE   CA bundle certbot trusts for the ACME server's HTTPS, as certbot sees
#                             it (inside the container: put it under /etc/letsencrypt). Empty: the
#                             system's store. certbot does not remember it, so every run passes it.
#   DETECTOR_CERTS_DIR        host path of certbot's config dir, mounted at /etc/letsencrypt in
#                             nginx and certbot (default /etc/letsencrypt)
#   CERTBOT_WEBROOT           the ACME webroot as certbot sees it (default /var/www/certbot, the
#                             container mount of DETECTOR_ACME_WEBROOT)
#   CERTBOT_CMD               command that runs certbot; its arguments are appended. Default: a
#                             throwaway container, `$COMPOSE_CMD run --rm certbot`
#   NGINX_START_CMD           default `$COMPOSE_CMD up` (the stack; nginx waits for the detector)
#   NGINX_RELOAD_CMD          default `$COMPOSE_CMD exec -T nginx nginx -s reload`
#   COMPOSE_CMD               default `sh <stack dir>/host/detector-stack-compose`, the one way
#                             the host drives the project (same project name as the boot unit)
#   NGINX_HTTPS_ADDR          where nginx's HTTPS listens, seen from this host (default
#                             127.0.0.1:443): after a reload the scripts wait until it serves the
#                             certificate on disk. Empty: skip that check.
#
# The commands are word-split on purpose so that they can carry arguments. With Debian's certbot
# on the host (the tests) the host's and certbot's views of the paths are the same.

CERTBOT_SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The Compose project's checkout: the one these scripts sit in when run from it, otherwise (the
# copies host/install.sh puts in /usr/local/lib/detector-stack) the VM's checkout.
if [ -z "${DETECTOR_STACK_DIR:-}" ]; then
    if [ -f "$CERTBOT_SCRIPT_DIR/../compose/compose.yaml" ]; then
        DETECTOR_STACK_DIR=$(dirname "$CERTBOT_SCRIPT_DIR")
    else
        DETECTOR_STACK_DIR=/opt/detector-stack
    fi
fi
# host/detector-stack-compose reads it too: both must address the same checkout.
export DETECTOR_STACK_DIR
DETECTOR_ENV_FILE=${DETECTOR_ENV_FILE:-$DETECTOR_STACK_DIR/compose/.env}

# load_settings FILE: KEY=VALUE lines (the docker-compose .env format), known keys only, not
# evaluated by the shell (the file also holds secrets this script has no business reading).
load_settings() {
    local line key value
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line%$'\r'}
        case $line in '' | '#'*) continue ;; esac
        key=${line%%=*}
        value=${line#*=}
        key=${key#export }
        case $key in
            DETECTOR_HOSTNAME | DETECTOR_ACME_EMAIL | DETECTOR_ACME_SERVER | DETECTOR_ACME_CA_BUNDLE | \
                DETECTOR_CERTS_DIR | CERTBOT_WEBROOT | CERTBOT_CMD | NGINX_START_CMD | NGINX_RELOAD_CMD | \
                NGINX_HTTPS_ADDR | COMPOSE_CMD) ;;
            *) continue ;;
        esac
        case $value in
            \"*\") value=${value:1:${#value}-2} ;;
            \'*\') value=${value:1:${#value}-2} ;;
        esac
        if [ -z "${!key+set}" ]; then
            printf -v "$key" '%s' "$value"
        fi
    done < "$1"
}
if [ -r "$DETECTOR_ENV_FILE" ]; then
    load_settings "$DETECTOR_ENV_FILE"
fi

CERT_DOMAIN=${DETECTOR_HOSTNAME:-}
CERT_EMAIL=${DETECTOR_ACME_EMAIL:-}
ACME_SERVER=${DETECTOR_ACME_SERVER:-https://acme-v02.api.letsencrypt.org/directory}
ACME_CA_BUNDLE=${DETECTOR_ACME_CA_BUNDLE:-}
CERT_DIR=${DETECTOR_CERTS_DIR:-/etc/letsencrypt}
CERTBOT_WEBROOT=${CERTBOT_WEBROOT:-/var/www/certbot}

COMPOSE_CMD=${COMPOSE_CMD:-sh $DETECTOR_STACK_DIR/host/detector-stack-compose}
CERTBOT_CMD=${CERTBOT_CMD:-}
NGINX_START_CMD=${NGINX_START_CMD:-$COMPOSE_CMD up}
NGINX_RELOAD_CMD=${NGINX_RELOAD_CMD:-$COMPOSE_CMD exec -T nginx nginx -s reload}
NGINX_HTTPS_ADDR=${NGINX_HTTPS_ADDR-127.0.0.1:443}
# `nginx -s reload` returns at once; new workers with the new certificate follow within a second.
# 30 s covers a loaded VM; longer means the reload did not take (e.g. a config error).
SERVED_CHECK_SECS=30

# The deploy hook is installed into certbot's own hook directory so that every `certbot renew`
# runs it, inside the container as well as on a host, without another mount.
DEPLOY_HOOK_PATH=$CERT_DIR/renewal-hooks/deploy/detector-stack-mark-renewed
# Written by the deploy hook (one line per renewed certificate), consumed by certbot/renew: its
# presence is the only reason to reload nginx. Kept until a reload succeeds.
RELOAD_MARKER=$CERT_DIR/detector-stack/reload-pending

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

require_config() {
    [ -n "$CERT_DOMAIN" ] || die "DETECTOR_HOSTNAME is not set (the certificate's hostname, e.g. detector.cereby.ai) in $DETECTOR_ENV_FILE or the environment"
    case $CERT_DOMAIN in
        *[!A-Za-z0-9.-]* | .* | *..*) die "DETECTOR_HOSTNAME '$CERT_DOMAIN' is not a hostname" ;;
    esac
}

# run_certbot ARGS...: certbot with the ACME server's CA bundle passed again on every run.
run_certbot() {
    if [ -n "$CERTBOT_CMD" ]; then
        # shellcheck disable=SC2086
        REQUESTS_CA_BUNDLE=${ACME_CA_BUNDLE:-${REQUESTS_CA_BUNDLE:-}} $CERTBOT_CMD "$@"
    else
        # A throwaway container of the Compose `certbot` service (same mounts as nginx).
        # shellcheck disable=SC2086
        $COMPOSE_CMD run --rm -T ${ACME_CA_BUNDLE:+-e REQUESTS_CA_BUNDLE=$ACME_CA_BUNDLE} certbot "$@"
    fi
}

reload_nginx() {
    log "reloading nginx: $NGINX_RELOAD_CMD"
    # shellcheck disable=SC2086
    $NGINX_RELOAD_CMD
}

install_deploy_hook() {
    mkdir -p "$(dirname "$DEPLOY_HOOK_PATH")" "$(dirname "$RELOAD_MARKER")"
    if ! cmp -s "$CERTBOT_SCRIPT_DIR/deploy-hook" "$DEPLOY_HOOK_PATH" 2>/dev/null; then
        install -m 0755 "$CERTBOT_SCRIPT_DIR/deploy-hook" "$DEPLOY_HOOK_PATH"
    fi
}

# has_lineage: certbot manages a certificate for CERT_DOMAIN (not the bootstrap's stand-in).
has_lineage() {
    [ -f "$CERT_DIR/renewal/$CERT_DOMAIN.conf" ] && [ -e "$CERT_DIR/live/$CERT_DOMAIN/fullchain.pem" ]
}

serial_of_file() { openssl x509 -in "$1" -noout -serial 2>/dev/null; }
serial_served() {
    openssl s_client -connect "$NGINX_HTTPS_ADDR" -servername "$CERT_DOMAIN" </dev/null 2>/dev/null |
        openssl x509 -noout -serial 2>/dev/null
}

# wait_until_served: nginx hands out the certificate that is on disk (bounded by SERVED_CHECK_SECS).
wait_until_served() {
    [ -n "$NGINX_HTTPS_ADDR" ] || return 0
    local want got="" deadline=$((SECONDS + SERVED_CHECK_SECS))
    want=$(serial_of_file "$CERT_DIR/live/$CERT_DOMAIN/fullchain.pem")
    while [ "$SECONDS" -lt "$deadline" ]; do
        got=$(serial_served || true)
        if [ "$got" = "$want" ]; then
            log "nginx at $NGINX_HTTPS_ADDR serves the certificate on disk (${want#serial=})"
            return 0
        fi
        sleep 0.5
    done
    log "error: after ${SERVED_CHECK_SECS}s nginx at $NGINX_HTTPS_ADDR still serves ${got:-nothing} instead of ${want:-?}"
    return 1
}

# days_left FILE: whole days until the certificate in FILE expires (negative once expired).
days_left() {
    local end
    end=$(openssl x509 -in "$1" -noout -enddate) || return 1
    end=${end#notAfter=}
    echo $(( ($(date -d "$end" +%s) - $(date +%s)) / 86400 ))
}
