import { expect, registerApp, signIn, startScripted, test, unique } from "./fixtures";

test("a viewer sees only its apps' runs and cannot stop, approve or start", async ({ browser, admin, platform }) => {
  const appA = unique("app-a");
  const appB = unique("app-b");
  await registerApp(admin, { appId: appA, runtimeDefaults: { provider: "scripted" } });
  await registerApp(admin, { appId: appB, runtimeDefaults: { provider: "scripted" } });
  const created = await admin.post("/api/principals", { data: { name: unique("viewer"), role: "viewer", apps: [appA] } });
  expect(created.status(), await created.text()).toBe(201);
  const viewerToken: string = (await created.json()).token;

  const waiting = [{ humanLoop: { prompt: "May I continue?", kind: "command" } }, { message: { text: "continued" } }];
  const runA = await startScripted(admin, waiting, { appId: appA });
  const runB = await startScripted(admin, waiting, { appId: appB });

  const context = await browser.newContext({ baseURL: platform.gatewayUrl });
  const page = await context.newPage();
  try {
    await signIn(page, viewerToken);
    await expect(page.getByTestId("principal")).toContainText("viewer");
    await expect(page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Start a run" })).toHaveCount(0);

    await page.goto("/runs");
    const table = page.getByTestId("runs-table");
    await expect(table.locator(`tr[data-run-id="${runA}"]`)).toBeVisible();
    await expect(table.locator(`tr[data-run-id="${runB}"]`)).toHaveCount(0);
    await expect(table.locator("tbody tr")).toHaveCount(1);

    await page.goto(`/runs/${runA}`);
    const decisions = page.getByRole("region", { name: "Waiting for a decision" });
    await expect(decisions).toContainText("May I continue?");
    await expect(decisions).toContainText("Viewers cannot answer requests.");
    await expect(page.getByRole("button", { name: "Approve" })).toHaveCount(0);
    await expect(page.getByRole("button", { name: "Deny" })).toHaveCount(0);
    await expect(page.getByRole("button", { name: "Stop run" })).toHaveCount(0);

    // Another app's run does not exist for the viewer, in the view or its stream.
    await page.goto(`/runs/${runB}`);
    await expect(page.getByText("This run does not exist, or you may not see it.")).toBeVisible();
    await expect(page.getByTestId("timeline").locator("[data-kind]")).toHaveCount(0);

    await page.goto("/start");
    await expect(page.getByText("Viewers can follow runs but not start them.")).toBeVisible();
  } finally {
    await context.close();
    for (const run of [runA, runB]) await admin.post(`/api/runs/${run}/stop`, { data: {} });
  }
});
