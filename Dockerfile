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
# A mount point for the file store (--store-dir /store on a volume, with a
# deployment made by `init --store file`), so that a new named volume mounted
# there starts out owned by the nonroot user. The JetStream store needs none.
RUN mkdir -p /out/store

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/provisioner /provisioner
COPY --from=build --chown=65532:65532 /out/store /store
USER 65532:65532
ENTRYPOINT ["/provisioner"]
CMD ["serve", "--config", "/deploy/config.container.json"]
