# polymur, built from this repository: `docker build -t polymur .`
# Runs as `docker run polymur relay --destinations carbon:2003 ...`
# (`docker run polymur <relay|control|gateway|proxy> --help` lists every option);
# polymurctl is on the PATH: `docker run --entrypoint polymurctl polymur --help`.

# Build: the full dependency tree (TypeScript is a dev dependency); `npm ci`
# runs the package's "prepare" script, `npm run build` (tsc -> dist/).
FROM node:24-slim AS build
WORKDIR /src
COPY . .
RUN npm ci && test -f dist/cli/polymur/main.js

# Run: production dependencies only, the compiled dist/ and the launcher.
FROM node:24-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# --ignore-scripts: "prepare" would try to compile again without TypeScript.
# The `node` package (the Node 24 a checkout runs under) is not needed: the
# image's own Node is 24, so its empty shell is removed.
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force \
 && rm -rf node_modules/node node_modules/.bin/node
COPY --from=build /src/dist ./dist
COPY bin ./bin
# `polymur` and `polymurctl` on the PATH. /var/lib/polymur holds what the roles
# keep on disk (control/: the control plane's --state-dir, node/: a managed
# node's --state-dir, spool/: a proxy's --spool-dir, keys/: a proxy's API key
# file), owned by the user they run as: a named volume mounted on one of these
# directories starts with its owner, so the non-root process can write to it.
RUN ln -s /app/bin/polymur.js /usr/local/bin/polymur \
 && ln -s /app/bin/polymurctl.js /usr/local/bin/polymurctl \
 && mkdir -p /var/lib/polymur/control /var/lib/polymur/node /var/lib/polymur/spool /var/lib/polymur/keys \
 && chown -R node:node /var/lib/polymur
USER node
# 2003 plaintext in (relay, proxy; UDP with --udp-addr), 2020 /stats, /metrics,
# /healthz (relay, gateway, proxy), 7000 the control plane, 8443 a gateway.
EXPOSE 2003 2020 7000 8443
ENTRYPOINT ["node", "/app/bin/polymur.js"]
CMD ["relay", "--help"]
