import { expect, signIn, test } from "./fixtures";

async function runCount(admin: import("@playwright/test").APIRequestContext): Promise<number> {
  const response = await admin.get("/api/runs?limit=500");
  return (await response.json()).runs.length;
}

test("a cross-site form POST starts nothing", async ({ page, admin, platform }) => {
  await signIn(page, platform.adminToken);
  const before = await runCount(admin);
  // A page on another site that posts a run start to the gateway, the classic CSRF: a
  // text/plain form body that reads as JSON, no custom header possible.
  await page.route("http://attacker.test/**", (route) =>
    route.fulfill({
      contentType: "text/html",
      body: `<!doctype html><form id="f" method="POST" action="${platform.gatewayUrl}/api/runs/start" enctype="text/plain">
        <input name='{"provider":"scripted","prompt":"forged","x":"' value='"}'></form>
        <script>document.getElementById("f").submit()</script>`,
    }),
  );
  const answered = page.waitForResponse((response) => response.url() === `${platform.gatewayUrl}/api/runs/start`);
  await page.goto("http://attacker.test/");
  const response = await answered;
  // SameSite=Strict keeps the cookie off the cross-site request: not signed in.
  expect(response.status()).toBe(401);
  expect(await runCount(admin)).toBe(before);
});

test("a script with the cookie but without the CSRF token is refused", async ({ page, admin, platform }) => {
  await signIn(page, platform.adminToken);
  const before = await runCount(admin);
  // What the gateway sees when SameSite does not help (a sibling subdomain, an old
  // browser): the cookie comes along, the CSRF header does not.
  const refused = await page.evaluate(async () => {
    const response = await fetch("/api/runs/start", {
      method: "POST",
      credentials: "include",
      headers: { "content-type": "text/plain" },
      body: JSON.stringify({ provider: "scripted", prompt: "forged" }),
    });
    return { status: response.status, body: await response.json() };
  });
  expect(refused.status).toBe(403);
  expect(refused.body.error.code).toBe("csrf_rejected");
  const wrong = await page.evaluate(async () => {
    const response = await fetch("/api/runs/start", {
      method: "POST",
      headers: { "content-type": "application/json", "x-switchyard-csrf": "guessed" },
      body: JSON.stringify({ provider: "scripted", prompt: "forged" }),
    });
    return response.status;
  });
  expect(wrong).toBe(403);
  expect(await runCount(admin)).toBe(before);
});
