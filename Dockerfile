# Build: a static binary (modernc.org/sqlite is pure Go, so no cgo).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# `entrasync version` reads the commit from the build's VCS stamp; where the
# context has no .git, pass it: docker build --build-arg VERSION=v1.2.0 --build-arg COMMIT=$(git rev-parse HEAD) .
ARG VERSION=
ARG COMMIT=
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/entrasync ./cmd/entrasync \
 && mkdir -p /out/data

# Run: nothing but the binary, as a non-root user, data in a volume.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/entrasync /entrasync
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV ENTRASYNC_ADDR=:8080 \
    ENTRASYNC_DB=/data/entrasync.db \
    ENTRASYNC_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["/entrasync"]
CMD ["serve"]
