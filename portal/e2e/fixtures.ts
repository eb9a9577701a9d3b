// Shared fixtures of the portal's browser tests: the platform global-setup.ts started,
// an admin API client (bearer token), and helpers that drive the portal like a user.

import { test as base, expect, request as playwrightRequest, type APIRequestContext, type Page } from "@playwright/test";

export interface Platform {
  gatewayUrl: string;
  adminToken: string;
  controlUrl: string;
  fakeModelUrl: string;
  fakeModelOpenaiUrl: string;
  gatewayLog: string;
}

export const test = base.extend<{ admin: APIRequestContext }, { platform: Platform }>({
  platform: [
    async ({}, use) => {
      const raw = process.env.PORTAL_PLATFORM;
      if (!raw) throw new Error("PORTAL_PLATFORM is not set: run through `npm run e2e` (global setup starts the platform)");
      await use(JSON.parse(raw) as Platform);
    },
    { scope: "worker" },
  ],
  baseURL: async ({ platform }, use) => use(platform.gatewayUrl),
  // Every test fails on an uncaught error in the page or a Content-Security-Policy
  // violation (the portal must run under the gateway's strict policy).
  page: async ({ page }, use) => {
    const problems: string[] = [];
    page.on("pageerror", (error) => problems.push(`uncaught: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error" && /Content.Security.Policy|Refused to/i.test(message.text())) problems.push(message.text());
    });
    await use(page);
    expect(problems, "errors in the page").toEqual([]);
  },
  admin: async ({ platform }, use) => {
    const context = await playwrightRequest.newContext({
      baseURL: platform.gatewayUrl,
      extraHTTPHeaders: { authorization: `Bearer ${platform.adminToken}` },
    });
    await use(context);
    await context.dispose();
  },
});

export { expect };

/** A name no other test uses, for apps and principals. */
export function unique(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
}

export async function signIn(page: Page, token: string): Promise<void> {
  await page.goto("/");
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("navigation", { name: "Main" })).toBeVisible();
}

export interface StartOptions {
  app?: string;
  provider?: string;
  prompt: string;
  options?: unknown;
}

/** Starts a run through the start form; returns its id once the run view shows. */
export async function startRun(page: Page, start: StartOptions): Promise<string> {
  await page.goto(start.app ? `/start?app=${encodeURIComponent(start.app)}` : "/start");
  await expect(page.getByRole("heading", { name: "Start a run" })).toBeVisible();
  if (start.app) await expect(page.getByLabel("App", { exact: true })).toHaveValue(start.app);
  if (start.provider) {
    // The providers list loads after the page: wait for the option to exist.
    await expect(page.getByLabel("Provider", { exact: true }).locator(`option[value="${start.provider}"]`)).toHaveCount(1);
    await page.getByLabel("Provider", { exact: true }).selectOption(start.provider);
  }
  await page.getByLabel("Prompt", { exact: true }).fill(start.prompt);
  if (start.options !== undefined) {
    await page.locator("summary", { hasText: "Provider options (JSON)" }).click();
    await page.getByRole("textbox", { name: "Provider options (JSON)" }).fill(JSON.stringify(start.options));
  }
  await page.getByRole("button", { name: "Start run" }).click();
  await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/);
  return page.url().split("/").pop()!;
}

/** Starts a scripted run through the API (as the admin); returns its id. */
export async function startScripted(admin: APIRequestContext, script: unknown[], extra: Record<string, unknown> = {}): Promise<string> {
  const response = await admin.post("/api/runs/start", {
    data: { provider: "scripted", prompt: "e2e", providerOptions: { script }, ...extra },
  });
  expect(response.status(), await response.text()).toBe(202);
  return (await response.json()).runId;
}

export async function registerApp(admin: APIRequestContext, body: Record<string, unknown>): Promise<void> {
  const response = await admin.post("/api/apps/register", { data: body });
  expect([200, 201], await response.text()).toContain(response.status());
}

/** Polls the run's record until its status is terminal; returns it. */
export async function waitFinished(admin: APIRequestContext, runId: string): Promise<any> {
  let run: any = null;
  await expect
    .poll(
      async () => {
        run = await (await admin.get(`/api/runs/${runId}`)).json();
        return ["succeeded", "failed", "stopped", "timed_out"].includes(run.status);
      },
      { timeout: 120_000 },
    )
    .toBe(true);
  return run;
}

/** Every cursor of a finished run, read from its whole stream with the admin token. */
export async function streamCursors(admin: APIRequestContext, runId: string): Promise<string[]> {
  const response = await admin.get(`/api/runs/${runId}/stream`, { timeout: 60_000 });
  expect(response.status()).toBe(200);
  const text = await response.text();
  return text
    .split("\n")
    .filter((line) => line.startsWith("id:"))
    .map((line) => line.slice(3).trim());
}

/** The cursors the run view's event log shows, in DOM order. */
export async function domCursors(page: Page): Promise<string[]> {
  await page.getByRole("tab", { name: /^Events/ }).click();
  const log = page.getByTestId("event-log");
  await expect(log).toHaveAttribute("data-windowed", "false");
  return log.locator("[data-cursor]").evaluateAll((rows) => rows.map((row) => row.getAttribute("data-cursor") ?? ""));
}

/** The run view's status badge text once the stream has delivered the terminal event. */
export async function expectStreamComplete(page: Page): Promise<void> {
  await expect(page.getByTestId("connection")).toHaveAttribute("data-phase", "ended", { timeout: 120_000 });
}

/** Kills the gateway process with SIGKILL and starts it again on the same port. */
export async function restartGateway(platform: Platform): Promise<void> {
  const response = await fetch(`${platform.controlUrl}/gateway/restart`, { method: "POST" });
  expect(response.status, await response.text()).toBe(200);
}

/** A script of `steps` tool calls, each followed by a pause, then a final message. */
export function slowScript(steps: number, pauseMs: number, final = "all done"): unknown[] {
  const script: unknown[] = [];
  for (let i = 0; i < steps; i++) {
    script.push({ toolCall: { name: "shell", input: { command: `step ${i}` }, output: `out ${i}`, exitCode: 0 } });
    script.push({ sleepMs: pauseMs });
  }
  script.push({ message: { text: final, chunks: 3 } });
  return script;
}
