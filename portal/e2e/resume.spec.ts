// Never losing an event: a reload, a gateway killed with SIGKILL and restarted, and a
// second tab all end with every event of the run shown exactly once, checked by the
// cursor ids in the DOM against the run's whole stream.

import {
  domCursors,
  expect,
  expectStreamComplete,
  restartGateway,
  signIn,
  slowScript,
  startScripted,
  streamCursors,
  test,
  waitFinished,
} from "./fixtures";
import type { Page } from "@playwright/test";

/** Waits until the run view has shown at least `n` events. */
async function seen(page: Page, n: number): Promise<number> {
  let count = 0;
  await expect
    .poll(async () => {
      count = Number((await page.getByTestId("event-count").textContent())?.replace(/\D/g, "") ?? 0);
      return count;
    })
    .toBeGreaterThanOrEqual(n);
  return count;
}

function expectExactlyOnce(shown: string[], all: string[]): void {
  expect(new Set(shown).size, "no event twice").toBe(shown.length);
  expect(shown, "every event, in order").toEqual(all);
}

test.beforeEach(async ({ page, platform }) => {
  await signIn(page, platform.adminToken);
});

test("a reload mid-run resumes from the last cursor: every event once", async ({ page, admin }) => {
  const runId = await startScripted(admin, slowScript(40, 120));
  const streams: string[] = [];
  page.on("request", (request) => {
    if (request.url().includes(`/api/runs/${runId}/stream`)) streams.push(request.url());
  });
  await page.goto(`/runs/${runId}`);
  const before = await seen(page, 30);
  await page.reload();
  await expect(page.getByTestId("connection")).toContainText("resumed after event #");
  await expectStreamComplete(page);
  // The stream after the reload started from a cursor, not from the beginning.
  const resumed = streams.filter((url) => url.includes("cursor="));
  expect(resumed.length, streams.join("\n")).toBeGreaterThanOrEqual(1);
  expect(before).toBeLessThan(Number(await page.getByTestId("event-count").textContent()));

  await waitFinished(admin, runId);
  expectExactlyOnce(await domCursors(page), await streamCursors(admin, runId));
  await expect(page.getByTestId("duplicates")).toHaveCount(0);
});

test("a gateway killed and restarted mid-run: the view reconnects, every event once", async ({ page, admin, platform }) => {
  const runId = await startScripted(admin, slowScript(40, 150));
  await page.goto(`/runs/${runId}`);
  await seen(page, 20);
  await restartGateway(platform);
  await expect(page.getByTestId("connection")).toContainText("Reconnected — resumed after event #", { timeout: 60_000 });
  await expectStreamComplete(page);
  await expect(page.getByTestId("connection")).toContainText("reconnected");
  await waitFinished(admin, runId);
  expectExactlyOnce(await domCursors(page), await streamCursors(admin, runId));
  // The session outlived the gateway process: still signed in.
  await page.reload();
  await expect(page.getByRole("navigation", { name: "Main" })).toBeVisible();
});

test("a lost network connection resumes without a gap", async ({ page, admin, context }) => {
  const runId = await startScripted(admin, slowScript(40, 120));
  await page.goto(`/runs/${runId}`);
  await seen(page, 20);
  await context.setOffline(true);
  await expect(page.getByTestId("connection")).toHaveAttribute("data-phase", "reconnecting", { timeout: 30_000 });
  await context.setOffline(false);
  await expectStreamComplete(page);
  await waitFinished(admin, runId);
  expectExactlyOnce(await domCursors(page), await streamCursors(admin, runId));
});

test("a second tab on the same run shows the same events", async ({ page, admin, context }) => {
  const runId = await startScripted(admin, slowScript(25, 120));
  await page.goto(`/runs/${runId}`);
  await seen(page, 10);
  const second = await context.newPage();
  await second.goto(`/runs/${runId}`);
  await expectStreamComplete(page);
  await expectStreamComplete(second);
  const all = await streamCursors(admin, runId);
  expectExactlyOnce(await domCursors(page), all);
  expectExactlyOnce(await domCursors(second), all);
});
