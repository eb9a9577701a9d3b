import { expect, expectStreamComplete, signIn, startRun, test } from "./fixtures";

test.beforeEach(async ({ page, platform }) => {
  await signIn(page, platform.adminToken);
});

test("a started run streams its text, rendered as Markdown and never as HTML", async ({ page }) => {
  const text = [
    "Hello **streamed** world with `inline code`.",
    "",
    "```rust",
    "fn main() { println!(\"hi\"); }",
    "```",
    "",
    '<img src="x" onerror="window.__pwned = 1"> and <script>window.__pwned = 2</script>',
    "",
    "[a link](javascript:window.__pwned=3) and [a real one](https://example.com/)",
  ].join("\n");
  const longOutput = Array.from({ length: 40 }, (_, i) => `output line ${i}`).join("\n");
  await startRun(page, {
    provider: "scripted",
    prompt: "say hello",
    options: {
      script: [
        { reasoning: { text: "I should greet the user." } },
        { message: { text, chunks: 12 } },
        { toolCall: { name: "shell", input: { command: "ls -la" }, output: longOutput, exitCode: 0 } },
        { fileChange: { path: "src/lib.rs", change: "modified", diff: "@@ -1 +1 @@\n-old\n+new" } },
        { usage: { inputTokens: 120, outputTokens: 45 } },
      ],
    },
  });
  const timeline = page.getByTestId("timeline");
  await expect(timeline.locator("strong", { hasText: "streamed" })).toBeVisible();
  await expectStreamComplete(page);
  await expect(page.locator(".run-header .badge.status-succeeded")).toBeVisible();

  // Markdown: bold, inline code, a code block with its language.
  await expect(timeline.locator("code", { hasText: "inline code" })).toBeVisible();
  await expect(timeline.locator('code[data-lang="rust"]')).toContainText('println!("hi")');
  // Untrusted HTML is shown as text, not run; unsafe links are not links.
  await expect(timeline.getByText('<img src="x" onerror="window.__pwned = 1">', { exact: false })).toBeVisible();
  expect(await page.evaluate(() => (window as any).__pwned)).toBeUndefined();
  await expect(timeline.locator("img")).toHaveCount(0);
  await expect(timeline.getByRole("link", { name: "a link" })).toHaveCount(0);
  await expect(timeline.getByRole("link", { name: "a real one" })).toHaveAttribute("rel", /noopener/);

  // Reasoning is folded; the tool call shows input and folds its long output.
  const reasoning = timeline.locator("details.reasoning");
  await expect(reasoning).not.toHaveAttribute("open", "");
  await expect(reasoning.locator("summary")).toContainText("Reasoning");
  const tool = timeline.getByRole("region", { name: "Tool call shell" });
  await expect(tool).toContainText("succeeded");
  await expect(tool.getByText("output line 39")).toHaveCount(0);
  await tool.getByRole("button", { name: "Show all 40 lines" }).click();
  await expect(tool.getByText("output line 39", { exact: false })).toBeVisible();
  await tool.getByText("Input").click();
  await expect(tool.getByText('"command": "ls -la"')).toBeVisible();
  // The file change and the usage.
  await expect(timeline.getByRole("region", { name: "File modified: src/lib.rs" })).toBeVisible();
  await expect(page.locator(".run-facts")).toContainText("120 input / 45 output tokens");
});

test("approving a request lets the run continue", async ({ page }) => {
  await startRun(page, {
    provider: "scripted",
    prompt: "clean up",
    options: {
      script: [
        { message: { text: "I want to clean the build directory." } },
        { humanLoop: { prompt: "Run rm -rf build?", kind: "command", details: { command: ["rm", "-rf", "build"], cwd: "/work" } } },
        { message: { text: "Cleaned up after approval." } },
      ],
    },
  });
  const decisions = page.getByRole("region", { name: "Waiting for a decision" });
  await expect(decisions).toContainText("Run rm -rf build?");
  await expect(decisions).toContainText("rm -rf build");
  await expect(page.locator(".run-header .badge.status-waiting_for_human")).toBeVisible();
  await decisions.getByRole("button", { name: "Approve" }).click();
  await expect(page.getByTestId("timeline").getByText("Cleaned up after approval.")).toBeVisible();
  await expectStreamComplete(page);
  await expect(decisions).toHaveCount(0);
  await expect(page.getByTestId("timeline").getByRole("region", { name: "Approval request" })).toContainText("Approved");
  await expect(page.locator(".run-header .badge.status-succeeded")).toBeVisible();
});

test("denying a request is reported to the run", async ({ page }) => {
  await startRun(page, {
    provider: "scripted",
    prompt: "deploy",
    options: {
      script: [
        { humanLoop: { prompt: "Push to production?", kind: "permission" } },
        { message: { text: "Carrying on without pushing." } },
      ],
    },
  });
  const decisions = page.getByRole("region", { name: "Waiting for a decision" });
  await decisions.getByLabel("Message to the agent (optional)").fill("not today");
  await decisions.getByRole("button", { name: "Deny" }).click();
  await expectStreamComplete(page);
  const request = page.getByTestId("timeline").getByRole("region", { name: "Approval request" });
  await expect(request).toContainText("Denied");
  await expect(request).toContainText("not today");
  await expect(page.getByTestId("timeline").getByText("Carrying on without pushing.")).toBeVisible();
});

test("stopping a run ends it stopped, with its partial output kept", async ({ page }) => {
  await startRun(page, {
    provider: "scripted",
    prompt: "long job",
    options: { script: [{ message: { text: "Starting the long job." } }, { sleepMs: 120000 }, { message: { text: "never said" } }] },
  });
  await expect(page.getByTestId("timeline").getByText("Starting the long job.")).toBeVisible();
  await page.getByRole("button", { name: "Stop run" }).click();
  await expectStreamComplete(page);
  await expect(page.locator(".run-header .badge.status-stopped")).toBeVisible();
  await expect(page.getByTestId("failure")).toContainText("stopped");
  await expect(page.getByTestId("timeline").getByText("Starting the long job.")).toBeVisible();
  await expect(page.getByRole("button", { name: "Stop run" })).toHaveCount(0);
});

test("a follow-up continues the conversation", async ({ page }) => {
  const first = await startRun(page, {
    provider: "scripted",
    prompt: "first turn",
    options: { script: [{ message: { text: "First answer." } }] },
  });
  await expectStreamComplete(page);
  await page.getByLabel("Follow-up prompt").fill("and now the second turn");
  await page.getByRole("button", { name: "Send follow-up" }).click();
  await page.waitForURL((url) => /\/runs\/[0-9a-f-]{36}$/.test(url.pathname) && !url.pathname.endsWith(first));
  await expectStreamComplete(page);
  await expect(page.getByRole("region", { name: "Other runs of this conversation" }).getByRole("link")).toHaveCount(1);
});
