import { expect, signIn, test } from "./fixtures";

test("a wrong token is refused and the right one signs in with an HttpOnly, strict cookie", async ({ page, platform, context }) => {
  await page.goto("/");
  await page.getByLabel("API token").fill("not-the-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toContainText("the token is not valid");

  await page.getByLabel("API token").fill(platform.adminToken);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("navigation", { name: "Main" })).toBeVisible();
  await expect(page.getByTestId("principal")).toContainText("admin");

  const [cookie] = (await context.cookies()).filter((c) => c.name === "sy_session");
  expect(cookie).toBeDefined();
  expect(cookie.httpOnly).toBe(true);
  expect(cookie.sameSite).toBe("Strict");
  expect(cookie.path).toBe("/api");
  expect(cookie.expires).toBeGreaterThan(Date.now() / 1000 + 3600);
  expect(cookie.value).not.toContain(platform.adminToken);
  // Scripts cannot read it.
  expect(await page.evaluate(() => document.cookie)).not.toContain("sy_session");
  // Nor is the token kept anywhere in the page's storage.
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  expect(stored).not.toContain(platform.adminToken);

  // A reload keeps the session.
  await page.reload();
  await expect(page.getByRole("navigation", { name: "Main" })).toBeVisible();
});

test("signing out clears the session", async ({ page, platform, context }) => {
  await signIn(page, platform.adminToken);
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
  await expect(page.getByText("You signed out.")).toBeVisible();
  expect((await context.cookies()).filter((c) => c.name === "sy_session")).toEqual([]);
  await page.reload();
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
});
