// The state at a glance: each list's mode with Activate / Deactivate (the lockout guard
// applies, the browser's address being the current IP), an emergency disable with a live
// countdown, or the daemon unreachable, said plainly with what to do.

import { h, replace, alert, button, label, duration, count } from "./dom.js";
import { ctl } from "./ctl.js";
import { openDialog, field } from "./dialog.js";

const MODES = {
    enforce: ["Active", "green", "new connections to its ports need a matching entry"],
    monitor: ["Monitor", "orange", "drops nothing; counts what it would drop"],
    off: ["Inactive", "grey", "all traffic passes (entries are kept)"],
};

let countdown = null;

/** Renders `status` (or the error that kept it from coming) into `el`. */
export function renderState(el, app, status, error) {
    clearInterval(countdown);
    if (error) {
        replace(el, unreachable(app, error));
        return;
    }
    replace(el,
            status.emergency ? emergency(app, status.emergency) : null,
            h("div", { class: "pf-v5-c-card pf-m-compact", "data-test": "state" },
              h("div", { class: "pf-v5-c-card__header" },
                h("div", { class: "pf-v5-c-card__actions" },
                  status.emergency ? null : button("Emergency disable…", () => emergencyDialog(app), "secondary", { "data-test": "emergency-open" })),
                h("div", { class: "pf-v5-c-card__title" },
                  h("h2", { class: "pf-v5-c-card__title-text" }, "State"))),
              h("div", { class: "pf-v5-c-card__body" },
                h("table", { class: "pf-v5-c-table pf-m-compact pf-m-grid-md", role: "grid" },
                  h("thead", { class: "pf-v5-c-table__thead" },
                    h("tr", { class: "pf-v5-c-table__tr" },
                      ["List", "Mode", "Ports", "Entries", "New connections", ""].map(t =>
                          h("th", { class: "pf-v5-c-table__th", scope: "col" }, t)))),
                  h("tbody", { class: "pf-v5-c-table__tbody" },
                    lists(status).map(l => listRow(app, l)))),
                h("p", { class: "alw-meta" },
                  `Revision ${status.revision} of ${status.config}; `,
                  `${count(status.entries)} entries (${count(status.entries_v4)} IPv4, ${count(status.entries_v6)} IPv6) of ${count(status.capacity)} per address family; `,
                  status.interfaces.map(i => `${i.name} (XDP ${i.xdp_mode})`).join(", ") || "no interface", "; ",
                  app.currentIp ? `your address: ${app.currentIp}` : "your address: unknown (not a remote login)"))));
}

function lists(status) {
    if (status.lists.length)
        return status.lists;
    return [{ name: "default", mode: status.active ? "enforce" : "off", tcp_ports: status.protected_tcp_ports, udp_ports: [], entries: status.entries, allowed: 0, dropped: 0, would_drop: 0 }];
}

function listRow(app, list) {
    const [word, color, meaning] = MODES[list.mode] || [list.mode, "grey", ""];
    const ports = [...list.tcp_ports.map(String), ...list.udp_ports.map(p => `${p}/udp`)].join(", ") || "none";
    const errorCell = h("td", { class: "pf-v5-c-table__td alw-row-error", colspan: "6" });
    const errorRow = h("tr", { class: "pf-v5-c-table__tr", hidden: true }, errorCell);
    const listArgs = list.name === "default" ? [] : ["--list", list.name];
    const change = (verb, extra = []) => {
        errorRow.hidden = true;
        app.change([verb, ...listArgs, ...extra])
                .catch(err => {
                    const fix = err.kind === "lockout" && app.currentIp && verb === "activate"
                        ? button("Add my current IP and activate",
                                 () => change("activate", ["--add-current"]), "primary", { "data-test": "add-current-activate" })
                        : null;
                    replace(errorCell, alert("danger", err.message, fix));
                    errorRow.hidden = false;
                });
    };
    const actions = [];
    if (list.mode !== "enforce")
        actions.push(button("Activate", () => change("activate"), "primary", { "data-test": `activate-${list.name}` }));
    if (list.mode !== "off")
        actions.push(button("Deactivate", () => change("deactivate"), "secondary", { "data-test": `deactivate-${list.name}` }));
    return [
        h("tr", { class: "pf-v5-c-table__tr", "data-list": list.name, "data-mode": list.mode },
          h("td", { class: "pf-v5-c-table__td", "data-label": "List" }, list.name),
          h("td", { class: "pf-v5-c-table__td", "data-label": "Mode" }, label(word, color), " ", h("small", {}, meaning)),
          h("td", { class: "pf-v5-c-table__td", "data-label": "Ports" }, ports),
          h("td", { class: "pf-v5-c-table__td", "data-label": "Entries" }, count(list.entries)),
          h("td", { class: "pf-v5-c-table__td", "data-label": "New connections" },
            `allowed ${count(list.allowed)}, dropped ${count(list.dropped)}` + (list.would_drop ? `, would drop ${count(list.would_drop)}` : "")),
          h("td", { class: "pf-v5-c-table__td alw-actions" }, actions)),
        errorRow,
    ];
}

function emergency(app, e) {
    const left = h("strong", { "data-test": "emergency-left" }, duration(e.remaining_secs));
    const ends = Date.now() + e.remaining_secs * 1000;
    countdown = setInterval(() => {
        const secs = Math.round((ends - Date.now()) / 1000);
        left.textContent = duration(secs);
        if (secs <= 0) {
            clearInterval(countdown);
            app.refresh();
        }
    }, 1000);
    const errorSlot = h("div");
    const end = button("End now", () => {
        app.change(["emergency-end"]).catch(err => replace(errorSlot, alert("danger", err.message)));
    }, "danger", { "data-test": "emergency-end" });
    return h("div", { class: "pf-v5-c-alert pf-m-danger", role: "alert", "data-test": "emergency" },
             h("p", { class: "pf-v5-c-alert__title" }, "Emergency disable: new connections from any source are let in"),
             h("div", { class: "pf-v5-c-alert__description" },
               h("p", {}, "Ends in ", left, ` (at ${e.until_local}). Reason: `, h("q", {}, e.reason), `, by ${e.by}.`),
               errorSlot),
             h("div", { class: "pf-v5-c-alert__action-group" }, end));
}

const DURATIONS = ["15m", "1h", "4h", "8h", "24h"];

function emergencyDialog(app) {
    const reason = field("emergency-reason", "Reason (required, goes into the audit log)",
                         { placeholder: "e.g. VPN concentrator down, ticket 4711", required: true });
    const duration = h("select", { class: "alw-input", id: "emergency-for", name: "for" },
                       DURATIONS.map(d => h("option", { value: d, selected: d === "1h" }, d)));
    openDialog({
        title: "Emergency disable",
        body: h("form", { class: "pf-v5-c-form", novalidate: true },
                h("p", {}, "For the time you choose, ", h("strong", {}, "new connections from any source are let in"),
                  " on every port an enforcing list protects, as if no list enforced. Established connections are not touched. ",
                  "It ends by itself at its deadline (at most 24 hours), even if allowlistd stops; ",
                  "\"End now\" ends it earlier."),
                reason.node,
                h("div", { class: "pf-v5-c-form__group" },
                  h("div", { class: "pf-v5-c-form__group-label" },
                    h("label", { class: "pf-v5-c-form__label", for: "emergency-for" },
                      h("span", { class: "pf-v5-c-form__label-text" }, "For"))),
                  h("div", { class: "pf-v5-c-form__group-control" }, h("span", { class: "pf-v5-c-form-control" }, duration)))),
        actionLabel: "Disable enforcement",
        actionVariant: "danger",
        action: () => app.change(["emergency-disable", "--reason", reason.input.value, "--for", duration.value]),
    });
}

function unreachable(app, error) {
    // The socket is root's (and control_group's): a session without administrative access
    // is refused before the daemon sees the request.
    if (app.admin === false && (error.kind === "unreachable" || error.kind === "permission-denied"))
        return alert("warning", "Administrative access is needed to manage the allowlist",
                     h("p", { "data-test": "needs-admin" },
                       "The allowlist daemon answers only root and members of its control_group, and this session has limited access. ",
                       "Turn on administrative access (\"Limited access\" at the top of the page); the page reloads with it."),
                     h("p", {}, "allowlistctl said: ", error.message));
    if (error.kind === "unreachable")
        return alert("danger", "The allowlist daemon cannot be reached",
                     h("p", { "data-test": "unreachable" }, error.message),
                     h("p", {}, "Start it with ", h("code", {}, "systemctl start allowlistd"),
                       "; if it stopped, ", h("code", {}, "journalctl -u allowlistd"),
                       " says why (a bad config is refused at start with the file and line). ",
                       "Nothing on this page works until it answers; the filter itself keeps enforcing its last rules."));
    if (error.kind === "permission-denied")
        return alert("danger", "Not allowed to manage the allowlist",
                     h("p", {}, error.message),
                     h("p", {}, "Turn on administrative access (top right), or ask for membership of the daemon's control_group."));
    return alert("danger", "The allowlist could not be read", h("p", {}, error.message));
}

/** Fetches the status. */
export function fetchStatus() {
    return ctl(["status"]);
}
