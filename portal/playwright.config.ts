import { defineConfig } from "@playwright/test";

// End-to-end tests of the portal in Debian's Chromium (no browser download), against a
// real platform that e2e/global-setup.ts starts: NATS, Postgres, the services, the
// fake model, and the gateway serving the built portal.
const chromium = process.env.PORTAL_CHROMIUM ?? "/usr/bin/chromium";

export default defineConfig({
  testDir: "./e2e",
  // The platform is shared and the machine small: one test at a time.
  workers: 1,
  fullyParallel: false,
  timeout: 180_000,
  expect: { timeout: 30_000 },
  retries: 0,
  reporter: [["list"]],
  globalSetup: "./e2e/global-setup.ts",
  outputDir: "test-results",
  use: {
    browserName: "chromium",
    headless: true,
    viewport: { width: 1280, height: 800 },
    trace: "retain-on-failure",
    launchOptions: {
      executablePath: chromium,
      // Without the background-networking flags Chromium keeps trying to reach Google
      // from a machine with no way out.
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
});
