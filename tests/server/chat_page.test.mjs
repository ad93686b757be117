// The chat page at / in headless Chromium (Debian's package, driven by playwright-core): it loads,
// names the model, sends a message and shows the reply as it streams in.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { startServer } from "./harness.mjs";

const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";

test("the chat page streams a reply", async () => {
  const s = await startServer([]);
  const browser = await chromium.launch({
    executablePath,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(s.url + "/");
    await page.waitForFunction(() => document.getElementById("model").textContent === "demo");
    await page.fill("#input", "Who was Moses?");
    await page.press("#input", "Enter");
    await page.waitForFunction(() => {
      const reply = document.querySelector(".msg.assistant");
      return reply && reply.textContent.length > 0 && !document.getElementById("send").disabled;
    }, null, { timeout: 20000 });
    assert.equal(await page.locator(".msg.user").textContent(), "Who was Moses?");
    assert.equal(await page.locator(".msg.error").count(), 0);
    assert.ok((await page.locator(".msg.assistant").textContent()).length > 0);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await s.stop();
  }
});
