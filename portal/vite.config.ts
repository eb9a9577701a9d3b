import { defineConfig } from "vitest/config";

// The portal is served by the gateway at `/`; `npm run dev` proxies the API to a
// gateway on 127.0.0.1:8080 (e.g. the one scripts/quickstart.sh starts), so the session
// cookie (Path=/api) works the same way in development.
export default defineConfig({
  build: {
    outDir: "dist",
    assetsDir: "assets",
    target: "es2022",
    sourcemap: false,
  },
  server: {
    proxy: {
      "/api": { target: process.env.SWITCHYARD_GATEWAY ?? "http://127.0.0.1:8080", changeOrigin: false },
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
