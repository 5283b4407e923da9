# polymur, built from this repository: `docker build -t polymur .`
# Runs as `docker run polymur relay --destinations carbon:2003 ...`
# (`docker run polymur relay --help` lists every option).

# Build: the full dependency tree (TypeScript is a dev dependency); `npm ci`
# runs the package's "prepare" script, `npm run build` (tsc -> dist/).
FROM node:24-slim AS build
WORKDIR /src
COPY . .
RUN npm ci && test -f dist/cli/polymur.js

# Run: production dependencies only, the compiled dist/ and the launcher.
FROM node:24-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# --ignore-scripts: "prepare" would try to compile again without TypeScript.
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY bin ./bin
USER node
# 2003 plaintext in (TCP; UDP with --udp-addr), 2020 /stats, /metrics, /healthz.
EXPOSE 2003 2020
ENTRYPOINT ["node", "/app/bin/polymur.js"]
CMD ["relay", "--help"]
