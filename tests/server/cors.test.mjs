// A web page on another origin calling the server from headless Chromium (issue 29): blocked by
// default, allowed with --allowed-origins (preflight, a streamed reply, and an error the page can
// read), and an origin not on the list still blocked.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { chromium } from "playwright-core";
import { startServer } from "./harness.mjs";

let browser, site, siteOrigin;

// The page's own origin: another port, so every call to the server is cross-origin.
before(async () => {
  site = http.createServer((req, res) => { res.setHeader("Content-Type", "text/html"); res.end("<!doctype html><title>app</title>"); });
  await new Promise((resolve) => site.listen(0, "127.0.0.1", resolve));
  siteOrigin = `http://127.0.0.1:${site.address().port}`;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
});
after(async () => {
  await browser?.close();
  site?.close();
});

// Runs the calls a browser app makes, in the page; each result is {ok, status, ...} or {failed}.
async function callFromPage(serverUrl, key) {
  const page = await browser.newPage();
  try {
    await page.goto(siteOrigin + "/");
    return await page.evaluate(async ({ url, key }) => {
      const attempt = async (fn) => { try { return await fn(); } catch (e) { return { failed: e.message }; } };
      const headers = { "Content-Type": "application/json", Authorization: `Bearer ${key}` };
      const models = await attempt(async () => {
        const r = await fetch(url + "/v1/models", { headers });
        return { status: r.status, id: (await r.json()).data[0].id };
      });
      const stream = await attempt(async () => {
        const r = await fetch(url + "/v1/chat/completions", { method: "POST", headers,
          body: JSON.stringify({ messages: [{ role: "user", content: "Who was Moses?" }], max_tokens: 8, stream: true }) });
        const text = await r.text();
        return { status: r.status, done: text.trimEnd().endsWith("data: [DONE]"), chunks: text.split("data: ").length - 1 };
      });
      const unauthorized = await attempt(async () => {
        const r = await fetch(url + "/v1/models", { headers: { Authorization: "Bearer wrong" } });
        return { status: r.status, message: (await r.json()).error.message };
      });
      return { models, stream, unauthorized };
    }, { url: serverUrl, key });
  } finally {
    await page.close();
  }
}

test("without --allowed-origins a page on another origin cannot call the server", async () => {
  const s = await startServer(["--api-key", "K"]);
  try {
    const r = await callFromPage(s.url, "K");
    assert.match(r.models.failed, /Failed to fetch/);
    assert.match(r.stream.failed, /Failed to fetch/);
    // The server itself answered the refused preflight with a 403 naming the flag.
    const preflight = await fetch(s.url + "/v1/models", { method: "OPTIONS",
      headers: { Origin: siteOrigin, "Access-Control-Request-Method": "GET" } });
    assert.equal(preflight.status, 403);
    assert.match((await preflight.json()).error.message, /may not call this server \(--allowed-origins\)/);
  } finally {
    await s.stop();
  }
});

test("with --allowed-origins the page calls, streams, and reads errors", async () => {
  for (const allowed of [`http://elsewhere.test,${siteOrigin}`, "*"]) {
    const s = await startServer(["--api-key", "K", "--allowed-origins", allowed]);
    try {
      const r = await callFromPage(s.url, "K");
      assert.deepEqual(r.models, { status: 200, id: "demo" }, allowed);
      assert.equal(r.stream.status, 200);
      assert.ok(r.stream.done && r.stream.chunks > 2, JSON.stringify(r.stream));
      assert.equal(r.unauthorized.status, 401);
      assert.match(r.unauthorized.message, /invalid or missing API key/);
    } finally {
      await s.stop();
    }
  }
});

test("an origin not on the list stays blocked", async () => {
  const s = await startServer(["--allowed-origins", "http://elsewhere.test"]);
  try {
    const r = await callFromPage(s.url, "none");
    assert.match(r.models.failed, /Failed to fetch/);
  } finally {
    await s.stop();
  }
});
