# The detector image: a Rust build stage, then a slim Debian runtime that runs detector-api as
# a non-root user. Build it with scripts/build-detector-image: the context is `git archive` of
# one commit (tracked files only) and DETECTOR_REVISION is that commit, so the revision label,
# /healthz and the source list in /usr/share/detector-api/SOURCES all name what was built.
# The FROM images are the names scripts/build-base-images builds where no registry is reachable.

# The dependency recipe: the workspace manifests with every crate's sources replaced by stubs,
# so the dependency layer below is rebuilt only when a manifest or Cargo.lock changes.
FROM rust:1.95.0-slim-bookworm AS planner
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN set -eu; \
    mkdir -p /recipe; \
    cp Cargo.toml Cargo.lock /recipe/; \
    for manifest in crates/*/Cargo.toml; do \
        crate=$(dirname "$manifest"); \
        mkdir -p "/recipe/$crate/src"; \
        cp "$manifest" "/recipe/$crate/"; \
        if [ -f "$crate/build.rs" ]; then cp "$crate/build.rs" "/recipe/$crate/"; fi; \
        echo 'fn main() {}' >"/recipe/$crate/src/main.rs"; \
        : >"/recipe/$crate/src/lib.rs"; \
        # Every target file must exist for cargo to read the workspace: those a manifest names
        # by path, and the benches, tests, examples and binaries found at the default places.
        # Stubs, so only adding or removing such a file touches the recipe.
        targets=$(sed -n 's/^path *= *"\([^"]*\.rs\)".*/\1/p' "$manifest"); \
        for dir in benches tests examples src/bin; do \
            if [ -d "$crate/$dir" ]; then \
                targets="$targets $(cd "$crate" && find "$dir" -name '*.rs')"; \
            fi; \
        done; \
        for target in $targets; do \
            mkdir -p "/recipe/$crate/$(dirname "$target")"; \
            echo 'fn main() {}' >"/recipe/$crate/$target"; \
        done; \
    done

FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
# Crates vendored from Cargo.lock by `scripts/build-detector-image --vendor` (for engines that
# cannot download them), as .cargo/config.toml + .cargo/vendor; without them, cargo downloads.
# The glob copies Cargo.lock alone when the context has no .cargo.
COPY Cargo.lock .carg[o] /src/.cargo/
COPY --from=planner /recipe ./
# Only detector-api and its dependencies: the image needs nothing else, and this build is the
# longest step of the stack's CI.
RUN cargo build --release --locked -p detector-api
RUN rm -rf crates
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
ARG DETECTOR_REVISION=unknown
# touch: the stubs above are newer than the copied sources, which would look up to date.
RUN set -eu; \
    find crates -name '*.rs' -exec touch {} +; \
    DETECTOR_REVISION="$DETECTOR_REVISION" cargo build --release --locked -p detector-api --bin detector-api; \
    install -D -m 0755 target/release/detector-api /out/usr/local/bin/detector-api; \
    # The sources this binary was built from, for checking an image against a checkout.
    mkdir -p /out/usr/share/detector-api; \
    find Cargo.toml Cargo.lock crates -type f | LC_ALL=C sort | xargs sha256sum >/out/usr/share/detector-api/SOURCES

FROM debian:bookworm-slim AS runtime
# A fixed uid/gid so host-side files (the model, a key file) can be granted to it.
RUN groupadd --system --gid 10001 detector \
 && useradd --system --uid 10001 --gid detector --home-dir /nonexistent --shell /usr/sbin/nologin detector
COPY --from=build /out/ /
ARG DETECTOR_REVISION=unknown
LABEL org.opencontainers.image.title="detector-api" \
      org.opencontainers.image.description="AI-generated-text detector scoring API" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${DETECTOR_REVISION}"
# The container listens on the compose network; the model is mounted read-only at /models.
ENV DETECTOR_BIND=0.0.0.0:8080 \
    DETECTOR_MODEL_PATH=/models/SmolLM2-135M-Instruct.Q4_1.gguf
USER detector:detector
EXPOSE 8080
# The probe sends the configured key: a keyless probe of /healthz would be refused with 401.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["detector-api", "healthcheck"]
ENTRYPOINT ["detector-api"]
