// A 10,000-event run stays responsive: both lists render only the rows in view.

import { expect, expectStreamComplete, signIn, startScripted, test } from "./fixtures";

test("a 10,000-event run renders windowed and stays responsive", async ({ page, admin, platform }) => {
  const script: unknown[] = [];
  for (let i = 0; i < 3333; i++) script.push({ toolCall: { name: "shell", input: { i }, output: `line ${i}`, exitCode: 0 } });
  script.push({ message: { text: "The end of a long run.", chunks: 1 } });
  // 3,333 tool calls are more model turns than the default budget allows.
  const runId = await startScripted(admin, script, { providerOptions: { script, budget: { maxTurns: 5000 } } });
  await signIn(page, platform.adminToken);
  const started = Date.now();
  await page.goto(`/runs/${runId}`);
  await expectStreamComplete(page);
  const loaded = Date.now() - started;
  const count = Number((await page.getByTestId("event-count").textContent())?.replace(/\D/g, ""));
  expect(count).toBeGreaterThanOrEqual(10_000);
  console.log(`10k-event run: ${count} events shown in ${loaded} ms`);

  const timeline = page.getByTestId("timeline");
  await expect(timeline).toHaveAttribute("data-windowed", "true");
  // A few dozen rows in the DOM, not thousands.
  expect(await timeline.locator(".windowed-row").count()).toBeLessThan(60);
  await expect(timeline.getByText("The end of a long run.")).toBeVisible();

  // The page answers input at once: switching tabs and scrolling to the top.
  const click = Date.now();
  await page.getByRole("tab", { name: /^Events/ }).click();
  const log = page.getByTestId("event-log");
  await expect(log).toHaveAttribute("data-windowed", "true");
  expect(Date.now() - click).toBeLessThan(3000);
  expect(await log.locator(".windowed-row").count()).toBeLessThan(80);
  await expect(log.locator(`[data-seq="${count}"]`)).toBeVisible();
  await log.evaluate((el) => (el.scrollTop = 0));
  await expect(log.locator('[data-seq="1"]')).toBeVisible();
  const frame = await page.evaluate(
    () => new Promise<number>((resolve) => {
      const t = performance.now();
      requestAnimationFrame(() => resolve(performance.now() - t));
    }),
  );
  expect(frame).toBeLessThan(500);
});
