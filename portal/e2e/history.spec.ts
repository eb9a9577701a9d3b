import { expect, registerApp, signIn, startScripted, test, unique, waitFinished } from "./fixtures";

test("run history filters by app, status and provider, and pages", async ({ page, admin, platform }) => {
  const app = unique("history");
  await registerApp(admin, { appId: app, runtimeDefaults: { provider: "scripted" } });
  const runs: string[] = [];
  for (let i = 0; i < 22; i++) runs.push(await startScripted(admin, [{ message: { text: `run ${i}` } }], { appId: app }));
  const failed = await startScripted(admin, [{ fail: { reason: "provider_error", detail: "scripted failure" } }], { appId: app });
  for (const run of [...runs, failed]) await waitFinished(admin, run);

  await signIn(page, platform.adminToken);
  await page.goto("/runs");
  await page.getByLabel("App", { exact: true }).selectOption(app);
  await expect(page).toHaveURL(new RegExp(`appId=${app}`));
  const rows = page.getByTestId("runs-table").locator("tbody tr");
  await expect(rows).toHaveCount(20);
  // Newest first: the failed run, then the others from the last started.
  await expect(rows.first()).toHaveAttribute("data-run-id", failed);
  await expect(rows.nth(1)).toHaveAttribute("data-run-id", runs[21]);

  await page.getByRole("button", { name: "Older" }).click();
  await expect(rows).toHaveCount(3);
  await expect(rows.last()).toHaveAttribute("data-run-id", runs[0]);
  await expect(page.getByRole("button", { name: "Older" })).toBeDisabled();
  await page.getByRole("button", { name: "Back to newest" }).click();
  await expect(rows).toHaveCount(20);

  await page.getByLabel("Status", { exact: true }).selectOption("failed");
  await expect(rows).toHaveCount(1);
  await expect(rows.first()).toContainText("provider_error");
  await page.getByLabel("Status", { exact: true }).selectOption("");
  await page.getByLabel("Provider", { exact: true }).selectOption("codex-app-server");
  await expect(page.getByText("No runs match.")).toBeVisible();
  await page.getByLabel("Provider", { exact: true }).selectOption("scripted");
  await expect(rows).toHaveCount(20);
  // The filters live in the URL: a reload keeps them.
  await page.reload();
  await expect(page.getByLabel("Provider", { exact: true })).toHaveValue("scripted");
  await expect(page.getByLabel("App", { exact: true })).toHaveValue(app);
  await expect(rows).toHaveCount(20);
});
