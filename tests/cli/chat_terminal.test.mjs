// `nanoserve chat` in a real terminal (tmux), keystrokes in and the screen out (issue 30): line
// editing and history (libedit), a history kept across runs, a line ending in '\' and a pasted
// block each sent as one message, Ctrl-C at the prompt clearing the line and a second one quitting,
// Ctrl-D quitting. (Ctrl-C during a reply is cli_test's ChatCtrlCStopsTheReplyNotTheProgram.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

const binary = process.env.NANOSERVE_BINARY;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// tmux's server runs as this test's child (-D) rather than as a daemon of its own: CI's sandbox lost
// a daemonized server ("server exited unexpectedly"). Its log (-v) goes into the test's folder and
// is shown when a session cannot start. A machine whose tmux server dies on its own cannot run this
// test: it is skipped there, with the log, as the GPU tests are on a machine without a GPU.
class TmuxUnavailable extends Error {}
let servers = 0;

class Terminal {
  constructor(home) {
    // A server of its own, nothing shared with the user's tmux; and a socket of its own per run: a
    // second run reusing the first one's path raced the first server's exit on CI ("no server running").
    this.socket = path.join(home, `tmux-${++servers}.sock`);
    this.home = home;
    this.server = spawn("tmux", ["-S", this.socket, "-f", "/dev/null", "-D", "-v"], { cwd: home, stdio: "ignore" });
    this.exited = null;
    this.server.on("exit", (code, signal) => { this.exited = signal ?? `exit ${code}`; });
  }
  static async open(home, args) {
    const t = new Terminal(home);
    for (const start = Date.now(); !existsSync(t.socket); await sleep(20)) {
      if (t.exited) throw new TmuxUnavailable(`tmux's server ended at its start (${t.exited})\n${t.logs()}`);
      if (Date.now() - start > 10000) assert.fail(`tmux's server made no socket in 10 s\n${t.logs()}`);
    }
    const command = `${binary} ${args.join(" ")}; echo "[exit $?]"; sleep 60`;
    try {
      t.tmux("new-session", "-d", "-x", "120", "-y", "50", "-e", `HOME=${home}`, command);
    } catch (e) {
      await sleep(100);  // the server's exit, if that is what ended the command
      const why = `tmux could not open a session: ${e.stderr}\n${t.logs()}`;
      t.close();
      throw t.exited ? new TmuxUnavailable(why) : new assert.AssertionError({ message: why });
    }
    return t;
  }
  logs() {
    return readdirSync(this.home).filter((f) => f === `tmux-server-${this.server.pid}.log`)
      .map((f) => `${f}:\n${readFileSync(path.join(this.home, f), "utf8").split("\n").slice(-40).join("\n")}`).join("\n");
  }
  tmux(...args) { return execFileSync("tmux", ["-S", this.socket, "-f", "/dev/null", ...args], { encoding: "utf8" }); }
  keys(...keys) { this.tmux("send-keys", ...keys); }
  type(text) { this.tmux("send-keys", "-l", text); }  // literally, newlines included (as a paste arrives)
  screen() { return this.tmux("capture-pane", "-p", "-S", "-200"); }
  // capture-pane drops trailing spaces: the prompt "> " reads ">", and the screen ends in blank lines.
  async waitFor(pattern, what, timeoutMs = 30000) {
    const start = Date.now();
    for (;;) {
      const screen = this.screen().trimEnd();
      if (typeof pattern === "function" ? pattern(screen) : pattern.test(screen)) return screen;
      if (Date.now() - start > timeoutMs) assert.fail(`timed out waiting for ${what}; the screen:\n${screen}`);
      await sleep(50);
    }
  }
  // Waits until the chat has answered `count` turns and shows its prompt again.
  async turns(count) {
    return this.waitFor((s) => (s.match(/\[prompt /g) ?? []).length === count && s.endsWith("\n>"), `${count} replies`);
  }
  close() {
    try { this.tmux("kill-server"); } catch { /* already gone */ }
    this.server.kill();
  }
}

test("the terminal chat edits lines, keeps a history, joins continued and pasted lines, and quits on Ctrl-C twice", async (context) => {
  const home = mkdtempSync(path.join(tmpdir(), "nanoserve-chat-"));
  let t;
  try {
    t = await Terminal.open(home, ["chat", "--temperature", "0", "-n", "8"]);
  } catch (e) {
    if (!(e instanceof TmuxUnavailable)) throw e;
    console.log(e.message);
    context.skip("tmux cannot run on this machine");
    rmSync(home, { recursive: true, force: true });
    return;
  }
  try {
    await t.waitFor((s) => s.endsWith("\n>"), "the prompt");
    // Left arrows move inside the line: "Who Moses?" becomes "Who was Moses?".
    t.type("Who Moses?");
    t.keys("Left", "Left", "Left", "Left", "Left", "Left");
    t.type("was ");
    t.keys("Enter");
    await t.turns(1);
    // Up brings the last message back; Ctrl-U clears it instead of sending.
    t.keys("Up");
    await t.waitFor(/^> Who was Moses\?$/m, "the history's last line");
    t.keys("C-u");
    // A trailing backslash continues the message on a second line.
    t.type("First line\\");
    t.keys("Enter");
    await t.waitFor((s) => s.endsWith("\n..."), "the continuation prompt");
    t.type("second line");
    t.keys("Enter");
    await t.turns(2);
    // Three lines pasted at once are one message.
    t.type("Pasted one\nPasted two\nPasted three\n");
    await t.turns(3);
    t.type(`/save ${home}/conversation.json`);
    t.keys("Enter");
    await t.waitFor(/\[saved 6 messages/, "the save");
    // Ctrl-C at the prompt drops the half-typed line and says how to quit; a second one quits.
    t.type("never sent");
    t.keys("C-c");
    await t.waitFor((s) => s.endsWith("[Ctrl-C again or Ctrl-D to quit]\n>"), "the first Ctrl-C's notice");
    t.keys("C-c");
    const screen = await t.waitFor(/\[exit \d+\]/, "the exit");
    assert.match(screen, /\[exit 0\]/);

    const users = JSON.parse(readFileSync(`${home}/conversation.json`, "utf8")).messages.filter((m) => m.role === "user");
    assert.deepEqual(users.map((m) => m.content),
      ["Who was Moses?", "First line\nsecond line", "Pasted one\nPasted two\nPasted three"]);
    const history = readFileSync(`${home}/.nanoserve_history`, "utf8");
    assert.ok(history.includes("Who\\040was\\040Moses?") && history.includes("First\\040line\\012second\\040line"), history);
    assert.ok(!history.includes("never"), history);
  } finally {
    t.close();
  }

  // A new run finds the history; Ctrl-D quits.
  const again = await Terminal.open(home, ["chat", "--temperature", "0", "-n", "8"]);
  try {
    await again.waitFor((s) => s.endsWith("\n>"), "the prompt");
    again.keys("Up");
    await again.waitFor(/^> \/save /m, "the saved history's newest line (commands are kept too)");
    again.keys("C-u", "C-d");
    assert.match(await again.waitFor(/\[exit \d+\]/, "the exit"), /\[exit 0\]/);
  } finally {
    again.close();
    rmSync(home, { recursive: true, force: true });
  }
});
