# The provisioner as a container image: a static binary on distroless,
# running as the nonroot user. docker-compose.yml runs it next to nats-server.

FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -trimpath -ldflags="-s -w" -o /out/provisioner ./cmd/provisioner
# The store's mount point, so that a new named volume mounted there starts
# out owned by the nonroot user.
RUN mkdir -p /out/store

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/provisioner /provisioner
COPY --from=build --chown=65532:65532 /out/store /store
USER 65532:65532
ENTRYPOINT ["/provisioner"]
CMD ["serve", "--config", "/deploy/config.json", "--nats-url", "nats://nats:4222", "--store-dir", "/store"]
