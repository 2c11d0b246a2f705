# syntax=docker/dockerfile:1
# The hearth image built with Docker or BuildKit: the same files (the static binary at
# /hearth, the CA bundle, passwd and group with nonroot 65532, /data, /tmp), user,
# entrypoint, environment, ports, volume and labels as `make image`, which builds it
# without a daemon (hack/image; its TestDockerfile parses and lints this file with
# BuildKit's own parser and linter and compares it with that image, instruction by
# instruction). For a reproducible image pass the commit's time:
#
#   docker build --build-arg VERSION=v0.2.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) \
#     --build-arg CREATED=$(date -u -d @$(git log -1 --format=%ct) +%Y-%m-%dT%H:%M:%SZ) \
#     -t hearth:v0.2.0 .

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY hack/image/go.mod hack/image/go.sum hack/image/
RUN cd hack/image && go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE_DATE_EPOCH=1
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=linux GOARCH=${TARGETARCH} go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" -o /out/hearth ./cmd/hearth
# The image's files as hack/image lays them out (modes, owners, times).
RUN cd hack/image && CGO_ENABLED=0 go run . -rootfs /rootfs -binary /out/hearth -created ${SOURCE_DATE_EPOCH}

FROM scratch
COPY --from=build /rootfs/ /
COPY --from=build --chown=65532:65532 /rootfs/data/ /data/
COPY --from=build --chown=65532:65532 /rootfs/home/nonroot/ /home/nonroot/
USER 65532:65532
WORKDIR /
ENV PATH=/ SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt TMPDIR=/tmp
EXPOSE 4040/tcp 7946/tcp
VOLUME ["/data"]
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:01Z
LABEL org.opencontainers.image.title="hearth" \
      org.opencontainers.image.description="Hearth: a continuous-profiling ingester (Pyroscope-compatible) and its Kubernetes operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/hearth-dev/hearth" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.created="${CREATED}"
ENTRYPOINT ["/hearth"]
CMD ["ingester"]
