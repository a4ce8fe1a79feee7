# syntax=docker/dockerfile:1
# Two images from one build: `meshd` (the control plane, distroless static, non-root) and `meshd-proxy`
# (Envoy + the meshd binary; entrypoint `meshd agent`; also runs `meshd init` as the init container).
# make images builds both with the tags the Makefile sets.

ARG RUST_VERSION=1.95
ARG ENVOY_VERSION=v1.40.0

FROM rust:${RUST_VERSION}-bookworm AS build
ARG GIT_COMMIT=unknown
ENV MESHD_GIT_COMMIT=${GIT_COMMIT}
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin meshd \
 && cp target/x86_64-unknown-linux-musl/release/meshd /meshd

FROM gcr.io/distroless/static-debian12:nonroot AS meshd
COPY --from=build /meshd /usr/local/bin/meshd
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/meshd"]
CMD ["controller"]

FROM envoyproxy/envoy:${ENVOY_VERSION} AS meshd-proxy
# iptables and nftables for `meshd init` (the init container runs this image as root with NET_ADMIN/NET_RAW).
RUN apt-get update && apt-get install -y --no-install-recommends iptables nftables && rm -rf /var/lib/apt/lists/* \
 && groupadd -g 1337 meshd-proxy && useradd -u 1337 -g 1337 -M -s /usr/sbin/nologin meshd-proxy
COPY --from=build /meshd /usr/local/bin/meshd
USER 1337:1337
ENTRYPOINT ["/usr/local/bin/meshd", "agent"]
