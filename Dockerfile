# syntax=docker/dockerfile:1
# The sidetrace container image:
#
#   docker build -t sidetrace:latest .
#   docker run --rm sidetrace:latest --version
#
# Build stage: Debian bookworm with the packages tests/install-deps.sh installs, a Release build of
# the sidetrace binary alone (no tests). Runtime stage: bookworm-slim with only the packages listed
# in k8s/image/runtime-packages.txt (the binary's libraries, the CA store, iptables for the
# transparent-egress init container with k8s/egress-iptables.sh), the stripped binary,
# a fixed non-root uid. sidetrace writes nothing to disk unless told to (an access log file,
# --ports-file), so the image runs with a read-only root filesystem.
#
# tests/image/run.sh (CI) builds the same runtime filesystem from the same package list with
# mmdebstrap, installs the binary the same way (install -s to /usr/local/bin) and runs it there as
# uid 65532 on a read-only root: proxying, OTLP export and drain on SIGTERM. Keep the two in step.

FROM debian:bookworm AS build
COPY tests/install-deps.sh /tmp/install-deps.sh
RUN bash /tmp/install-deps.sh && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# BuildKit's cache mount keeps ccache's objects between image builds.
RUN --mount=type=cache,target=/root/.cache/ccache \
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSIDETRACE_BUILD_TESTS=OFF \
          -DSIDETRACE_INTEGRATION_TESTS=OFF -DSIDETRACE_FUZZ_REPLAY=OFF \
 && cmake --build build --target sidetrace \
 && install -D -s -m 0755 build/proxy/sidetrace /out/usr/local/bin/sidetrace \
 && /out/usr/local/bin/sidetrace --version

FROM debian:bookworm-slim
# Also the project version in CMakeLists.txt; tests/image/run.sh checks that they agree.
ARG VERSION=0.1.0
ARG REVISION=""
LABEL org.opencontainers.image.title="sidetrace" \
      org.opencontainers.image.description="Tracing sidecar and edge proxy: a SERVER and a CLIENT span for every request it forwards, exported over OTLP" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
COPY k8s/image/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update \
 && grep -v '^[[:space:]]*#' /tmp/runtime-packages.txt \
    | DEBIAN_FRONTEND=noninteractive xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /tmp/runtime-packages.txt
COPY --from=build /out/ /
# The transparent-egress init container runs this image too (`sidetrace inject --transparent`):
# the iptables script, as root with NET_ADMIN, before sidetrace starts as 65532.
COPY --chmod=0755 k8s/egress-iptables.sh /usr/local/bin/egress-iptables.sh
# A fixed numeric uid (distroless' "nonroot"), so Kubernetes' runAsNonRoot can check it. Ports above
# 1024, as in k8s/, need no capability.
USER 65532:65532
# 15001: the listener in k8s/ and the README; 9901: admin (/ready, /metrics).
EXPOSE 15001 9901
ENTRYPOINT ["sidetrace"]
CMD ["--help"]
