// Starts the platform the tests run against (crates/switchyard/examples/portal_platform.rs):
// builds the portal and the Rust binaries first, then waits for the platform's JSON
// line and hands it to the tests in PORTAL_PLATFORM. Returns the teardown.

import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const portal = path.resolve(here, "..");
const repo = path.resolve(portal, "..");
const START_TIMEOUT_MS = 180_000;

export default async function globalSetup(): Promise<() => Promise<void>> {
  const chromium = process.env.PORTAL_CHROMIUM ?? "/usr/bin/chromium";
  if (!existsSync(chromium)) {
    throw new Error(`${chromium} is missing: install Debian's chromium (apt-get install -y chromium) or set PORTAL_CHROMIUM`);
  }
  if (process.env.PORTAL_SKIP_BUILD !== "1") {
    execFileSync("npm", ["run", "--silent", "build"], { cwd: portal, stdio: "inherit" });
    execFileSync("cargo", ["build", "--quiet", "-p", "switchyard", "--bin", "switchyard", "--example", "portal_platform"], {
      cwd: repo,
      stdio: "inherit",
    });
  }
  const target = process.env.CARGO_TARGET_DIR ?? path.join(repo, "target");
  const switchyard = path.join(target, "debug", "switchyard");
  const platformBin = path.join(target, "debug", "examples", "portal_platform");
  const child = spawn(platformBin, ["--switchyard", switchyard, "--portal-dir", path.join(portal, "dist")], {
    cwd: repo,
    stdio: ["pipe", "pipe", "inherit"],
    env: { ...process.env, RUST_LOG: process.env.PORTAL_PLATFORM_LOG ?? "warn" },
  });
  const exited = new Promise<never>((_, reject) =>
    child.once("exit", (code, signal) => reject(new Error(`the portal platform exited (${code ?? signal}) before it was ready`))),
  );
  const lines = createInterface({ input: child.stdout! });
  const first = new Promise<string>((resolve) => lines.once("line", resolve));
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error("the portal platform did not start in time")), START_TIMEOUT_MS).unref(),
  );
  let line: string;
  try {
    line = await Promise.race([first, exited, timeout]);
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  const info = JSON.parse(line);
  process.env.PORTAL_PLATFORM = JSON.stringify(info);
  console.log(`portal platform: gateway ${info.gatewayUrl}, gateway log ${info.gatewayLog}`);

  return async () => {
    // Closing stdin asks the platform to stop and remove its data.
    child.stdin?.end();
    await new Promise<void>((resolve) => {
      const kill = setTimeout(() => child.kill("SIGKILL"), 30_000);
      child.once("exit", () => {
        clearTimeout(kill);
        resolve();
      });
      if (child.exitCode !== null) resolve();
    });
  };
}
