// The page: the state at a glance above tabs. A tab is { title, node, load }, a module of
// its own each.

import { h, replace } from "./dom.js";
import { ctl, currentIp } from "./ctl.js";
import { renderState, fetchStatus } from "./state.js";
import { entriesTab } from "./entries.js";
import { testTab } from "./test_ip.js";
import { sessionsTab } from "./sessions.js";
import { blockedTab } from "./blocked.js";
import { auditTab } from "./audit.js";

/** The changes the lockout guard judges: they take the browser's address. */
const GUARDED = ["add", "edit", "remove", "activate", "deactivate", "sessions"];

const app = {
    status: null,
    currentIp: null,
    /** The Cockpit user: the audit records name them (`root for alice`). */
    user: null,
    /** Whether this session has administrative access (null until Cockpit has said). */
    admin: null,
    /** A change, then a refresh. */
    change(args) {
        const caller = app.currentIp && GUARDED.includes(args[0]) ? ["--current-ip", app.currentIp] : [];
        const user = app.user ? ["--on-behalf-of", app.user] : [];
        return ctl([...args, ...caller, ...user]).then(reply => app.refresh().then(() => reply));
    },
    /** The state and the open tab, asked for at once (each is a round trip to the daemon). */
    refresh() {
        const tab = current.load();
        return fetchStatus()
                .then(status => {
                    app.status = status;
                    renderState(stateEl, app, status, null);
                    tabsEl.hidden = false;
                    return tab;
                })
                .catch(err => {
                    app.status = null;
                    renderState(stateEl, app, null, err);
                    tabsEl.hidden = err.kind === "unreachable" || err.kind === "permission-denied" || err.kind === "not-installed";
                });
    },
};

const stateEl = h("div", { class: "alw-state" });
const tabs = [entriesTab(app), testTab(app), sessionsTab(app), blockedTab(app), auditTab(app)];
let current = tabs[0];
const panel = h("div", { class: "alw-panel" });
const tabButtons = tabs.map(tab => h("li", { class: "pf-v5-c-tabs__item" + (tab === current ? " pf-m-current" : "") },
                                     h("button", {
                                         class: "pf-v5-c-tabs__link", type: "button", "data-test": `tab-${tab.title}`,
                                         onclick: () => select(tab),
                                     }, h("span", { class: "pf-v5-c-tabs__item-text" }, tab.title))));
const tabsEl = h("div", {},
                 h("div", { class: "pf-v5-c-tabs" }, h("ul", { class: "pf-v5-c-tabs__list", role: "tablist" }, tabButtons)),
                 panel);

function select(tab) {
    current = tab;
    tabs.forEach((t, i) => tabButtons[i].classList.toggle("pf-m-current", t === tab));
    replace(panel, tab.node);
    tab.load();
}

replace(document.getElementById("app"),
        h("div", { class: "pf-v5-c-page__main-section pf-m-light" },
          h("h1", { class: "pf-v5-c-title pf-m-2xl" }, "IP allowlist")),
        h("div", { class: "pf-v5-c-page__main-section" }, stateEl, tabsEl));
replace(panel, current.node);

cockpit.translate();
// Administrative access ("superuser", sudo behind it) is what lets allowlistctl reach the
// daemon's socket as root. Asking for it also makes Cockpit reload the page when the admin
// turns it on or off; until it has answered, a failed read may be shown without the hint.
const admin = cockpit.permission({ admin: true });
admin.addEventListener("changed", () => {
    app.admin = admin.allowed;
    if (!app.status)
        app.refresh();
});
Promise.all([currentIp(), cockpit.user().catch(() => null)]).then(([ip, user]) => {
    app.currentIp = ip;
    app.user = user && user.name ? user.name : null;
    return app.refresh();
}).finally(() => document.body.setAttribute("data-ready", "1"));
// Counters and an emergency disable change by themselves: the state is fetched again every
// 10 s, unless a dialog or a refusal is open (the admin is reading it).
setInterval(() => {
    if (document.querySelector(".pf-v5-c-backdrop, tr:not([hidden]) > .alw-row-error"))
        return;
    fetchStatus().then(status => {
        app.status = status;
        renderState(stateEl, app, status, null);
    }).catch(() => {});
}, 10000);
