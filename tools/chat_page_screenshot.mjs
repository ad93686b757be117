// Takes docs/chat-page.png: the chat page in headless Chromium after two turns with the demo model
// (48 tokens each: the second shows the notice at the limit), the settings open. Usage: node tools/chat_page_screenshot.mjs BINARY [OUT] [--dark]
import { chromium } from "playwright-core";
import { startServer } from "../tests/server/harness.mjs";

const [binary, out = "docs/chat-page.png"] = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const dark = process.argv.includes("--dark");
const server = await startServer([], binary);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 720 }, colorScheme: dark ? "dark" : "light" });
  await page.addInitScript(() => localStorage.setItem("nanoserve.settings", JSON.stringify({ max_tokens: 48 })));
  await page.goto(server.url + "/");
  await page.waitForFunction(() => document.getElementById("model").textContent !== "nanoserve");
  for (const text of ["Who was Moses?", "And what did he say unto Pharaoh?"]) {
    await page.fill("#input", text);
    await page.press("#input", "Enter");
    await page.waitForFunction((n) => document.querySelectorAll(".meta .stats").length === n && !document.getElementById("send").hidden,
      text === "Who was Moses?" ? 1 : 2, { timeout: 30000 });
  }
  await page.click("#settings-toggle");
  await page.evaluate(() => { const log = document.getElementById("log"); log.scrollTop = log.scrollHeight; });
  await page.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await server.stop();
}
