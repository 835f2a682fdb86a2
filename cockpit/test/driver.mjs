// Drives Debian's Chromium with playwright-core for tests/tests/web_console/ and the bench
// (through tests/src/cockpit.rs): one JSON command a line on stdin, one JSON answer a line on
// stdout, so the Rust test checks the daemon, the config, the audit log and real connections
// between the clicks.
//
//   node driver.mjs URL PROFILE_DIR [FRAME_NAME]
// With COCKPIT_USER and COCKPIT_PASSWORD in its environment it logs in through Cockpit's
// login form first.
//   {"op": "click", "sel": "..."}            {"ok": true}
//   {"op": "fill", "sel": "...", "text": "..."}  (and "select": the option of that value)
//   {"op": "text", "sel": "..."}             {"ok": true, "value": "innerText"}
//   {"op": "wait", "sel": "...", "text": "..."}  (visible, and containing text if given)
//   {"op": "gone", "sel": "..."}             (no longer visible)
//   {"op": "reload"}                         (and wait for the page to be ready)
//   {"op": "load", "sel": "..."}             {"ok": true, "value": ms}: URL navigated to
//                                            again, until sel is visible (the bench)
//   {"op": "screenshot", "path": "..."}      (the whole window, Cockpit's shell included)
//   {"op": "superuser", "text": "PASSWORD"}  (administrative access through Cockpit's shell,
//                                            as Debian 12's Cockpit 287 draws it)
// Every wait is bounded by TIMEOUT, a navigation and the page getting ready by 30 s; a failure
// answers {"ok": false, "error": "..."}.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const TIMEOUT = 10000;
const [url, profile, frameName] = process.argv.slice(2);

const browser = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 860 },
    timeout: 30000,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
browser.setDefaultTimeout(TIMEOUT);
const page = browser.pages()[0] || await browser.newPage();
const messages = [];
page.on("console", msg => messages.push(`${msg.type()}: ${msg.text()}`));
page.on("pageerror", err => messages.push(`pageerror: ${err.message}`));

/** The allowlist page: in Cockpit's shell its iframe, else the page itself. */
function root() {
    return frameName ? page.frameLocator(`iframe[name="${frameName}"]`) : page;
}

/** The page has shown its first answer (a login and a session's start may come first). */
async function ready() {
    await root().locator("body[data-ready]").waitFor({ state: "attached", timeout: 30000 });
}

async function perform(cmd) {
    const at = cmd.sel ? root().locator(cmd.sel).first() : null;
    switch (cmd.op) {
    case "click":
        await at.click();
        return null;
    case "fill":
        await at.fill(cmd.text);
        return null;
    case "select":
        await at.selectOption(cmd.text);
        return null;
    case "text":
        await at.waitFor({ state: "visible" });
        return await at.innerText();
    case "wait":
        if (cmd.text)
            await root().locator(cmd.sel, { hasText: cmd.text }).first().waitFor({ state: "visible" });
        else
            await at.waitFor({ state: "visible" });
        return null;
    case "gone":
        await at.waitFor({ state: "hidden" });
        return null;
    case "reload":
        await page.reload();
        await ready();
        return null;
    case "load": {
        const started = Date.now();
        await page.goto(url, { timeout: 30000 });
        await at.waitFor({ state: "visible" });
        return Date.now() - started;
    }
    case "superuser":
        await page.click("#super-user-indicator button");
        await page.fill("#switch-to-admin-access-password", cmd.text);
        await page.click(".pf-c-modal-box button.pf-m-primary");
        await page.locator("#super-user-indicator", { hasText: "Administrative access" }).waitFor();
        await ready();
        return null;
    case "screenshot":
        await page.screenshot({ path: cmd.path });
        return null;
    default:
        throw new Error(`unknown op ${cmd.op}`);
    }
}

const answer = obj => process.stdout.write(JSON.stringify(obj) + "\n");
try {
    await page.goto(url, { timeout: 30000 });
    if (process.env.COCKPIT_USER) {
        await page.fill("#login-user-input", process.env.COCKPIT_USER);
        await page.fill("#login-password-input", process.env.COCKPIT_PASSWORD);
        await page.click("#login-button");
    }
    await ready();
    answer({ ok: true, value: "ready" });
} catch (e) {
    answer({ ok: false, error: `opening ${url}: ${e.message}`, console: messages });
    await browser.close();
    process.exit(1);
}
for await (const line of createInterface({ input: process.stdin })) {
    let cmd;
    try {
        cmd = JSON.parse(line);
        answer({ ok: true, value: await perform(cmd) });
    } catch (e) {
        answer({ ok: false, error: `${line}: ${e.message}`, console: messages.splice(0) });
    }
}
await browser.close();
