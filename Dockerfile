# The provisioner as a container image: a static binary on distroless,
# running as the nonroot user. docker-compose.yml runs two of it next to a
# three-node nats-server cluster.

FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -trimpath -ldflags="-s -w" -o /out/provisioner ./cmd/provisioner
# A mount point for the file store, so that a new named volume mounted there
# starts out owned by the nonroot user. The JetStream store needs none.
# `init --store file` writes no config.container.json, and its config.json
# points at nats://127.0.0.1: a file-store container runs with a command of
# its own, `serve --config /deploy/config.json --nats-url nats://SERVER:4222
# --store-dir /store` (its deploy/ mounted at /deploy, a volume at /store,
# one container: the file store is one process's).
RUN mkdir -p /out/store

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/provisioner /provisioner
COPY --from=build --chown=65532:65532 /out/store /store
USER 65532:65532
ENTRYPOINT ["/provisioner"]
CMD ["serve", "--config", "/deploy/config.container.json"]
