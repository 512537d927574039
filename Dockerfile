# keepalive-exporter image: the daemon, tcpdump for live capture, no build tools.
#
#   docker build -t keepalive-exporter .
#   docker run -d --network host --cap-drop ALL --cap-add NET_RAW keepalive-exporter --interface eth0
#   docker run -d -p 8080:8080 -p 10842:10842 keepalive-exporter --proxy :8080=upstream:80
#
# test/deploy/dockerfile.test.ts runs this file's build stage commands and checks the runtime
# stage's layout, health check and privilege model.

FROM node:20-bookworm-slim AS build
WORKDIR /src
# Dependencies first, so the layer is reused while only sources change. --ignore-scripts: the
# package's `prepare` (tsc) would run here before the sources are copied; the build runs below.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build
# Only production dependencies (fastify, prom-client) go to the runtime stage.
RUN npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
# tcpdump gets one file capability, CAP_NET_RAW, the only one it needs to open its packet socket
# (promiscuous mode is asked for on that socket, so no CAP_NET_ADMIN). The daemon runs as an
# unprivileged user; the kernel raises CAP_NET_RAW when it execs tcpdump, but only if the
# container's bounding set holds it (docker run --cap-add NET_RAW) and no_new_privs is off.
# Without NET_RAW, tcpdump cannot be executed at all; the proxy tap and --pcap never run it.
# libcap2-bin is only needed for setcap and is removed again.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tcpdump libcap2-bin \
 && setcap cap_net_raw=eip /usr/bin/tcpdump \
 && apt-get purge -y --auto-remove libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10842 keepalive \
 && useradd --system --uid 10842 --gid keepalive --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin keepalive
ENV NODE_ENV=production \
    KEEPALIVE_EXPORTER_WEB_LISTEN_ADDRESS=0.0.0.0:10842
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY deploy/docker/healthcheck.mjs ./healthcheck.mjs
# The daemon writes no file: the root file system can be mounted read-only.
USER 10842:10842
EXPOSE 10842
# GET /healthz on the address in KEEPALIVE_EXPORTER_WEB_LISTEN_ADDRESS: change the listen
# address with that variable (not the flag) and the health check follows it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["node", "/app/healthcheck.mjs"]
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
