# One image for `hearth ingester` and `hearth operator`: a static binary at /hearth,
# run as a non-root user, nothing else in the image (the preStop hook is `hearth prestop`,
# so no shell or curl is needed).
#
#   docker build -t hearth:dev .        (make docker-build IMG=...)
FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN go build -ldflags="-s -w -X main.version=${VERSION}" -o /out/hearth ./cmd/hearth \
 && mkdir -p /out/data

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/hearth /hearth
# An owned, empty /data so that `hearth ingester` also runs without a mounted volume.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
EXPOSE 4040 7946
ENTRYPOINT ["/hearth"]
CMD ["ingester"]
