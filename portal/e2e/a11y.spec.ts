// For people: no serious accessibility problems (axe-core) in either theme, keyboard
// reachable with a visible focus, usable 390 px wide, times in the viewer's zone.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { Page } from "@playwright/test";
import { expect, expectStreamComplete, registerApp, signIn, startScripted, test, unique } from "./fixtures";

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

async function axeViolations(page: Page): Promise<string[]> {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern.
  await page.evaluate(axeSource);
  const result: any = await page.evaluate(() => (window as any).axe.run(document, { resultTypes: ["violations"] }));
  return result.violations
    .filter((v: any) => v.impact === "serious" || v.impact === "critical")
    .map((v: any) => `${v.id} (${v.impact}): ${v.nodes.map((n: any) => n.target.join(" ")).join(", ")}`);
}

const SCRIPT = [
  { reasoning: { text: "Thinking." } },
  { message: { text: "Some **markdown** and `code`.\n\n```sh\nls\n```", chunks: 2 } },
  { toolCall: { name: "shell", input: { command: "ls" }, output: "a\nb", exitCode: 0 } },
  { fileChange: { path: "a.txt", change: "added", diff: "+a" } },
  { humanLoop: { prompt: "Proceed?", kind: "command", details: { command: ["make"] } } },
];

for (const scheme of ["light", "dark"] as const) {
  test(`the main views have no serious accessibility problems (${scheme})`, async ({ page, admin, platform }) => {
    await page.emulateMedia({ colorScheme: scheme });
    await page.goto("/");
    expect(await axeViolations(page), "sign-in").toEqual([]);
    await signIn(page, platform.adminToken);
    const app = unique("a11y");
    await registerApp(admin, { appId: app, runtimeDefaults: { provider: "scripted" }, executionProfiles: { fast: { timeoutMs: 60000 } } });
    const runId = await startScripted(admin, SCRIPT, { appId: app });
    try {
      for (const path of ["/runs", "/start", "/queue", "/providers", "/apps", `/apps/${app}`]) {
        await page.goto(path);
        await expect(page.locator("main h1")).toBeVisible();
        await page.waitForLoadState("networkidle");
        expect(await axeViolations(page), path).toEqual([]);
      }
      await page.goto(`/runs/${runId}`);
      await expect(page.getByRole("region", { name: "Waiting for a decision" })).toBeVisible();
      expect(await axeViolations(page), "run view").toEqual([]);
      await page.getByRole("tab", { name: /^Events/ }).click();
      expect(await axeViolations(page), "event log").toEqual([]);
    } finally {
      await admin.post(`/api/runs/${runId}/stop`, { data: {} });
    }
  });
}

test("everything is reachable by keyboard, with a visible focus", async ({ page, admin, platform }) => {
  await signIn(page, platform.adminToken);
  const runId = await startScripted(admin, [{ humanLoop: { prompt: "Keyboard?", kind: "command" } }]);
  try {
    await page.goto(`/runs/${runId}`);
    await expect(page.getByRole("button", { name: "Approve" })).toBeVisible();
    // Tab from the top: the skip link first, then every control in order.
    await page.keyboard.press("Tab");
    await expect(page.getByRole("link", { name: "Skip to content" })).toBeFocused();
    const reached = new Set<string>();
    for (let i = 0; i < 40; i++) {
      await page.keyboard.press("Tab");
      const focused = await page.evaluate(() => {
        const el = document.activeElement as HTMLElement | null;
        // Past the last control the focus leaves the page for the browser's own UI.
        if (!el || el === document.body) return null;
        const style = getComputedStyle(el);
        return { name: (el.getAttribute("aria-label") ?? el.textContent ?? "").trim(), outline: style.outlineStyle, width: style.outlineWidth };
      });
      if (!focused) continue;
      reached.add(focused.name);
      expect(focused.outline, `focus visible on ${focused.name}`).not.toBe("none");
      expect(focused.width).not.toBe("0px");
    }
    for (const name of ["Runs", "Start a run", "Queue", "Apps", "Providers", "Sign out", "Stop run", "Approve", "Deny", "Conversation"]) {
      expect([...reached], name).toContain(name);
    }
    // And a decision made from the keyboard.
    await page.getByRole("button", { name: "Approve" }).focus();
    await page.keyboard.press("Enter");
    await expectStreamComplete(page);
  } finally {
    await admin.post(`/api/runs/${runId}/stop`, { data: {} });
  }
});

test("a 390 px wide screen shows every view without sideways scrolling", async ({ page, admin, platform }) => {
  await page.setViewportSize({ width: 390, height: 844 });
  await signIn(page, platform.adminToken);
  const runId = await startScripted(admin, SCRIPT.slice(0, 4));
  for (const path of ["/runs", "/start", "/queue", "/providers", "/apps", `/runs/${runId}`]) {
    await page.goto(path);
    await expect(page.locator("main h1")).toBeVisible();
    await page.waitForLoadState("networkidle");
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    expect(width, path).toBeLessThanOrEqual(390);
  }
  await expect(page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Providers" })).toBeVisible();
});

test.describe("in another time zone", () => {
  test.use({ timezoneId: "Asia/Tokyo", locale: "en-US" });
  test("times are shown in the viewer's zone", async ({ page, admin, platform }) => {
    await signIn(page, platform.adminToken);
    const runId = await startScripted(admin, [{ message: { text: "hi" } }]);
    const run = await (await admin.get(`/api/runs/${runId}`)).json();
    await page.goto(`/runs/${runId}`);
    const created = page.locator(".run-facts time").first();
    await expect(created).toHaveAttribute("datetime", new Date(run.createdAt).toISOString());
    const expected = new Intl.DateTimeFormat("en-US", { timeZone: "Asia/Tokyo", hour: "2-digit", minute: "2-digit", second: "2-digit" }).format(
      new Date(run.createdAt),
    );
    await expect(created).toContainText(expected);
    await expect(created).toContainText("GMT+9");
  });
});
