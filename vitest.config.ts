import { defineConfig } from "vitest/config";

// Three projects: static checks of the repository itself (import rules, docs,
// the compose file), fast unit tests that mirror the source tree, and
// integration tests that start real processes (polymur itself, carbon-cache,
// Consul) on 127.0.0.1. All run in `npm test`.
export default defineConfig({
  test: {
    pool: "forks",
    projects: [
      {
        test: {
          name: "static",
          include: ["test/static/**/*.test.ts"],
        },
      },
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // Integration tests start servers and measure delivery; two at a time on a 2-core box.
          maxWorkers: 2,
        },
      },
    ],
  },
});
