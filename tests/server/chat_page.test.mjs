// The chat page at / in headless Chromium (Debian's package, driven by playwright-core), each of its
// features driven as a user would and asserted: streaming, markdown without HTML injection, new
// chat and the saved conversations, settings reaching the request, max_tokens kept within the
// context, the notice at the token limit, stop, regenerate, edit, speed figures, light and dark.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { startServer } from "./harness.mjs";

const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
let server, browser;

before(async () => {
  server = await startServer([]);
  browser = await chromium.launch({
    executablePath,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

// A fresh page (its own localStorage) with the model named; requests to the chat route are kept.
// Replies are kept short (Max tokens 32, until a test changes it): the sanitizer build is slow.
async function openPage(init) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.errors = [];
  page.chatRequests = [];
  page.on("pageerror", (e) => page.errors.push(e.message));
  page.on("request", (r) => { if (r.url().endsWith("/v1/chat/completions")) page.chatRequests.push(r.postDataJSON()); });
  await page.addInitScript(() => {
    if (!localStorage.getItem("nanoserve.settings")) localStorage.setItem("nanoserve.settings", JSON.stringify({ max_tokens: 32 }));
  });
  if (init) await page.addInitScript(init);
  await page.goto(server.url + "/");
  await page.waitForFunction(() => document.getElementById("model").textContent === "demo");
  return page;
}

const idle = (page) => page.waitForFunction(() => !document.getElementById("send").hidden && document.querySelector(".msg.assistant, .msg.error"),
  null, { timeout: 90000 });

async function sendMessage(page, text) {
  await page.fill("#input", text);
  await page.press("#input", "Enter");  // the reply starts at once: Send is hidden until it ends
  await idle(page);
}

test("a message streams a reply with its token counts and speed", async () => {
  const page = await openPage();
  await sendMessage(page, "Who was Moses?");
  assert.equal(await page.locator(".msg.user").textContent(), "Who was Moses?");
  assert.equal(await page.locator(".msg.error").count(), 0);
  assert.ok((await page.locator(".msg.assistant").textContent()).length > 0);
  const stats = await page.locator(".meta .stats").textContent();
  const [, tokens, seconds, rate] = stats.match(/^(\d+) tokens in ([\d.]+) s · ([\d.]+) tok\/s · prompt \d+ tokens.* · first token after \d+ ms$/);
  // The rate is tokens over the reply's time; the time is shown to 0.01 s and the rate to 0.1 tok/s.
  const slowest = Number(tokens) / (Number(seconds) + 0.005), fastest = Number(tokens) / Math.max(Number(seconds) - 0.005, 1e-3);
  assert.ok(Number(tokens) > 0 && Number(rate) + 0.05 >= slowest && Number(rate) - 0.05 <= fastest, stats);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test("markdown renders headings, lists, code and links, and never a reply's HTML", async () => {
  const reply = "## Title\n- **one** and *two*\n- `x < y`\n\n```js\n<script>alert(1)</script>\n```\n" +
    "<img src=x onerror=\"window.injected=1\"> [docs](https://example.com) [bad](javascript:alert(1))";
  const page = await openPage(`localStorage.setItem("nanoserve.conversations", JSON.stringify([{ id: "a", title: "saved",
    updated: 1, messages: [{ role: "user", content: "<b>hi</b>" }, { role: "assistant", content: ${JSON.stringify(reply)} }] }]))`);
  const html = await page.locator(".msg.assistant").innerHTML();
  assert.match(html, /<h4>Title<\/h4><ul><li><strong>one<\/strong> and <em>two<\/em><\/li><li><code>x &lt; y<\/code><\/li><\/ul>/);
  assert.match(html, /<pre><code data-language="js">&lt;script&gt;alert\(1\)&lt;\/script&gt;<\/code><\/pre>/);
  assert.match(html, /<a href="https:\/\/example.com\/?" target="_blank" rel="noopener noreferrer">docs<\/a>/);
  assert.ok(!/<img|<script|href="javascript/.test(html), html);
  assert.equal(await page.locator(".msg.user").innerHTML(), "&lt;b&gt;hi&lt;/b&gt;");
  assert.equal(await page.evaluate(() => window.injected), undefined);
  await page.context().close();
});

test("conversations are saved, listed, switched, started anew and deleted", async () => {
  const page = await openPage();
  await sendMessage(page, "First conversation");
  await page.click("#new-chat");
  assert.equal(await page.locator(".msg").count(), 0);
  await sendMessage(page, "Second conversation");
  assert.deepEqual(await page.locator("#conversations li span").allTextContents(), ["Second conversation", "First conversation"]);
  await page.reload();
  await page.waitForSelector(".msg.user");
  assert.equal(await page.locator(".msg.user").textContent(), "Second conversation");  // the newest, after a reload
  await page.locator("#conversations li", { hasText: "First conversation" }).click();
  assert.equal(await page.locator(".msg.user").textContent(), "First conversation");
  assert.equal(await page.locator(".msg.assistant").count(), 1);
  await page.locator("#conversations li", { hasText: "First conversation" }).locator("button.delete").click();
  assert.deepEqual(await page.locator("#conversations li span").allTextContents(), ["Second conversation"]);
  assert.equal(await page.locator(".msg").count(), 0);  // the one on screen was deleted: a new chat
  await page.context().close();
});

test("settings reach the request, max_tokens stays within the context, and a reply cut at the limit says so", async () => {
  const page = await openPage();
  await page.click("#settings-toggle");
  await page.fill("#system", "You are a prophet.");
  await page.fill("#temperature", "0");
  await page.fill("#top_p", "0.5");
  await page.fill("#max_tokens", "3");
  await page.locator("#max_tokens").dispatchEvent("change");
  for (const id of ["#system", "#temperature", "#top_p"]) await page.locator(id).dispatchEvent("change");
  await sendMessage(page, "Speak");
  const body = page.chatRequests.at(-1);
  assert.deepEqual(body.messages, [{ role: "system", content: "You are a prophet." }, { role: "user", content: "Speak" }]);
  assert.equal(body.temperature, 0);
  assert.equal(body.top_p, 0.5);
  assert.equal(body.max_tokens, 3);
  assert.match(await page.locator(".notice").textContent(), /stopped at the token limit \(3 tokens\)/);
  assert.match(await page.locator(".meta .stats").textContent(), /^3 tokens/);

  // Asked for more than the context holds: the request asks for the room left, and succeeds.
  await page.fill("#max_tokens", "100000");
  await page.locator("#max_tokens").dispatchEvent("change");
  const sent = page.chatRequests.length;
  await page.click(".regenerate");
  // The request is what is checked; the reply (up to the whole context) is stopped.
  await page.waitForFunction(() => !document.getElementById("stop").hidden);
  for (let i = 0; i < 600 && page.chatRequests.length === sent; i++) await new Promise((r) => setTimeout(r, 50));
  await page.click("#stop").catch(() => {});  // it may have finished already
  await idle(page);
  const capped = page.chatRequests.at(-1);
  const { count } = await (await fetch(server.url + "/tokenize", { method: "POST", body: JSON.stringify({ messages: capped.messages }) })).json();
  assert.equal(capped.max_tokens, 1024 - count);
  assert.equal(await page.locator(".msg.error").count(), 0);
  await page.reload();  // settings are kept
  assert.equal(await page.inputValue("#system"), "You are a prophet.");
  await page.context().close();
});

test("regenerate replaces the last reply; edit takes the last message back into the input", async () => {
  const page = await openPage();
  await sendMessage(page, "Who was Moses?");
  await page.click(".regenerate");
  await idle(page);
  assert.equal(await page.locator(".msg.assistant").count(), 1);
  assert.equal(page.chatRequests.length, 2);
  assert.deepEqual(page.chatRequests[1].messages, page.chatRequests[0].messages);
  await page.click(".edit");
  assert.equal(await page.inputValue("#input"), "Who was Moses?");
  assert.equal(await page.locator(".msg").count(), 0);
  await page.fill("#input", "Who was Aaron?");
  await page.press("#input", "Enter");
  await idle(page);
  assert.deepEqual(await page.locator(".msg.user").allTextContents(), ["Who was Aaron?"]);
  await page.context().close();
});

test("stop ends a reply that is still streaming and keeps what came", async () => {
  // A reply that never ends on its own: the server's stream is held open after its first chunk.
  const page = await openPage(() => {
    const realFetch = window.fetch;
    window.fetch = async (url, options) => {
      if (!String(url).endsWith("/v1/chat/completions")) return realFetch(url, options);
      const first = 'data: {"choices":[{"index":0,"delta":{"content":"And the LORD"}}]}\n\n';
      const body = new ReadableStream({
        start(c) { c.enqueue(new TextEncoder().encode(first)); options.signal.addEventListener("abort", () => c.error(new DOMException("stopped", "AbortError"))); },
      });
      return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream" } });
    };
  });
  await page.fill("#input", "Speak");
  await page.press("#input", "Enter");
  await page.waitForFunction(() => document.querySelector(".msg.assistant")?.textContent === "And the LORD");
  assert.equal(await page.locator("#stop").isVisible(), true);
  await page.click("#stop");
  await page.waitForFunction(() => !document.getElementById("send").hidden);
  assert.equal(await page.locator(".msg.assistant").textContent(), "And the LORD");
  assert.equal(await page.locator(".notice").textContent(), "Stopped.");
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test("an error is shown and the message can be retried", async () => {
  const page = await openPage();
  await page.evaluate(() => { document.getElementById("key").value = ""; });
  await page.route("**/v1/chat/completions", (route) => route.fulfill({ status: 503, contentType: "application/json",
    body: JSON.stringify({ error: { message: "the server is at capacity", type: "server_error", param: null, code: null } }) }));
  await sendMessage(page, "Hello");
  assert.equal(await page.locator(".msg.error").textContent(), "Error: the server is at capacity");
  await page.unroute("**/v1/chat/completions");
  await page.click(".retry");
  await idle(page);
  assert.equal(await page.locator(".msg.error").count(), 0);
  assert.equal(await page.locator(".msg.assistant").count(), 1);
  await page.context().close();
});

test("light and dark themes, the choice kept", async () => {
  const page = await openPage();
  const background = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const first = await page.evaluate(() => document.documentElement.dataset.theme);
  const before = await background();
  await page.click("#theme");
  const second = await page.evaluate(() => document.documentElement.dataset.theme);
  assert.deepEqual([first, second].sort(), ["dark", "light"]);
  assert.notEqual(await background(), before);
  await page.reload();
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), second);
  await page.context().close();
});
