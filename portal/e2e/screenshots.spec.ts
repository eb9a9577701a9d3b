// Screenshots of the main views, light and dark, wide and narrow. `npm run screenshots`
// writes them to docs/portal/ (PORTAL_SCREENSHOTS names the directory); in the normal
// e2e run they go to the test's output directory, so the views are still exercised.

import path from "node:path";
import type { Page } from "@playwright/test";
import { expect, expectStreamComplete, registerApp, signIn, startScripted, test, unique, waitFinished } from "./fixtures";

test.describe.configure({ timeout: 300_000 });

const SIZES = {
  wide: { width: 1280, height: 860 },
  narrow: { width: 390, height: 844 },
} as const;

const RICH = [
  { reasoning: { text: "The parser panics on empty input; defaulting to zero keeps the callers simple." } },
  {
    message: {
      text: "I found the problem in `parse()`:\n\n1. It **unwraps** the result\n2. Empty input panics\n\n```rust\nfn parse(s: &str) -> u32 {\n    s.trim().parse().unwrap_or(0)\n}\n```\n",
      chunks: 6,
    },
  },
  {
    toolCall: {
      name: "shell",
      input: { command: "cargo test -p parser" },
      output: Array.from({ length: 24 }, (_, i) => `test tests::case_${i} ... ok`).join("\n"),
      exitCode: 0,
    },
  },
  {
    fileChange: {
      path: "src/parse.rs",
      change: "modified",
      diff: "@@ -1,3 +1,3 @@\n fn parse(s: &str) -> u32 {\n-    s.parse().unwrap()\n+    s.trim().parse().unwrap_or(0)\n }",
    },
  },
  { usage: { inputTokens: 18342, outputTokens: 1211 } },
  {
    humanLoop: {
      prompt: "Run `git push origin fix-parse`?",
      kind: "command",
      details: { command: ["git", "push", "origin", "fix-parse"], cwd: "/work/parser" },
    },
  },
  { message: { text: "Pushed the branch." } },
];

test("screenshots of the main views", async ({ page, admin, platform }, testInfo) => {
  const dir = process.env.PORTAL_SCREENSHOTS ? path.resolve(process.env.PORTAL_SCREENSHOTS) : testInfo.outputPath("screenshots");
  const app = unique("parser");
  await registerApp(admin, {
    appId: app,
    name: "Parser service",
    runtimeDefaults: {
      provider: "codex-app-server",
      model: "fake-model",
      credentialEnv: ["OPENAI_API_KEY"],
      timeoutMs: 600000,
    },
    executionProfiles: { scripted: { provider: "scripted", timeoutMs: 60000 }, careful: { providerOptions: { approvalPolicy: "untrusted" } } },
  });
  // A history: a succeeded, a failed (real CLI, refused key), a stopped and a waiting run.
  const done = await startScripted(admin, [{ message: { text: "All tests pass." } }], { appId: app });
  const failed = (await (await admin.post("/api/runs/start", { data: { appId: app, prompt: "SCN_E401 fix the parser" } })).json()).runId;
  const stopped = await startScripted(admin, [{ sleepMs: 60000 }], { appId: app });
  await admin.post(`/api/runs/${stopped}/stop`, { data: {} });
  const rich = await startScripted(admin, RICH, { appId: app });
  await waitFinished(admin, done);
  await waitFinished(admin, failed);
  await waitFinished(admin, stopped);

  const shoot = async (page: Page, name: string) => {
    // Stable pictures: no caret blinking, no pending fetches.
    await page.waitForLoadState("networkidle");
    await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: true, animations: "disabled" });
  };

  try {
    for (const scheme of ["light", "dark"] as const) {
      for (const [size, viewport] of Object.entries(SIZES)) {
        await page.setViewportSize(viewport);
        await page.emulateMedia({ colorScheme: scheme });
        await page.context().clearCookies();
        await page.goto("/");
        await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
        await shoot(page, `sign-in-${scheme}-${size}`);
        await signIn(page, platform.adminToken);

        await page.goto(`/runs?appId=${app}`);
        await expect(page.getByTestId("runs-table").locator("tbody tr")).toHaveCount(4);
        await shoot(page, `runs-${scheme}-${size}`);

        await page.goto(`/runs/${rich}`);
        await expect(page.getByRole("region", { name: "Waiting for a decision" })).toBeVisible();
        // The start of the conversation (the view follows its end while live).
        await page.getByTestId("timeline").evaluate((el) => (el.scrollTop = 0));
        await expect(page.getByRole("button", { name: "Jump to latest" })).toBeVisible();
        await shoot(page, `run-${scheme}-${size}`);

        await page.goto(`/runs/${failed}`);
        await expect(page.getByTestId("failure-reason")).toHaveText("auth_invalid");
        await shoot(page, `run-failed-${scheme}-${size}`);

        await page.goto(`/start?app=${app}`);
        await page.getByLabel("Prompt", { exact: true }).fill("Make parse() accept surrounding whitespace.");
        await shoot(page, `start-${scheme}-${size}`);

        if (size === "wide") {
          await page.goto(`/apps/${app}`);
          await expect(page.getByRole("heading", { name: "Execution profiles" })).toBeVisible();
          await shoot(page, `app-${scheme}-${size}`);
          await page.goto("/providers");
          await expect(page.locator("[data-provider=scripted]")).toBeVisible();
          await shoot(page, `providers-${scheme}-${size}`);
          await page.goto("/queue");
          await expect(page.getByTestId("queue-pending")).toBeVisible();
          await shoot(page, `queue-${scheme}-${size}`);
        }
      }
    }
    // The approval, answered: the run goes on to its end.
    await page.goto(`/runs/${rich}`);
    await page.getByRole("button", { name: "Approve" }).click();
    await expectStreamComplete(page);
  } finally {
    await admin.post(`/api/runs/${rich}/stop`, { data: {} });
  }
});
