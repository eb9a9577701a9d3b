// One real agent CLI (codex, through `codex app-server`) against the local fake model:
// the portal drives a whole turn with its approvals, and shows a failed run's reason
// and evidence.

import { expect, expectStreamComplete, registerApp, signIn, startRun, test, unique } from "./fixtures";

test.describe.configure({ timeout: 240_000 });

test("codex-app-server runs a tool turn with approvals, and a refused key shows its evidence", async ({ page, admin, platform }) => {
  const app = unique("codex");
  await registerApp(admin, {
    appId: app,
    runtimeDefaults: {
      provider: "codex-app-server",
      model: "fake-model",
      credentialEnv: ["OPENAI_API_KEY"],
      // Ask for every command, so the turn needs a human. (The executor's operator
      // points codex at the fake model: apps cannot choose where a key goes.)
      providerOptions: { approvalPolicy: "untrusted" },
      timeoutMs: 180_000,
    },
  });
  await signIn(page, platform.adminToken);

  // The provider defaults to the app's; codex-cli is shown as its alias.
  await page.goto(`/start?app=${app}`);
  const provider = page.getByLabel("Provider", { exact: true });
  await expect(provider).toHaveValue("codex-app-server");
  await expect(provider.locator('option[value="codex-app-server"]')).toContainText("alias: codex-cli");

  const runId = await startRun(page, { app, prompt: "Create hello.txt please" });
  // Answer every approval like a person would, until the run ends.
  const decisions = page.getByRole("region", { name: "Waiting for a decision" });
  const connection = page.getByTestId("connection");
  await expect
    .poll(
      async () => {
        if ((await connection.getAttribute("data-phase")) === "ended") return "ended";
        const approve = decisions.getByRole("button", { name: "Approve" }).first();
        if (await approve.isVisible().catch(() => false)) await approve.click().catch(() => undefined);
        return "running";
      },
      { timeout: 180_000, intervals: [500] },
    )
    .toBe("ended");
  await expect(page.locator(".run-header .badge.status-succeeded")).toBeVisible();
  const timeline = page.getByTestId("timeline");
  await expect(timeline.getByText("FINAL_ANSWER_OK", { exact: false })).toBeVisible();
  await expect(timeline.locator('[data-kind="tool"]').first()).toBeVisible();
  await expect(timeline.getByRole("region", { name: "Approval request" }).first()).toContainText("Approved");
  const run = await (await admin.get(`/api/runs/${runId}`)).json();
  expect(run.provider).toBe("codex-app-server");

  // The fake model refuses the key: the run fails auth_invalid, with evidence.
  await startRun(page, { app, prompt: "SCN_E401 hello" });
  await expectStreamComplete(page);
  const failure = page.getByTestId("failure");
  await expect(failure.getByTestId("failure-reason")).toHaveText("auth_invalid");
  await expect(failure).toContainText("refused the credentials");
  await expect(failure.getByTestId("evidence")).toContainText("401");
});
