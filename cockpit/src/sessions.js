// Sessions: established connections to protected ports, covered by an entry or NOT, "End"
// for one (`sessions --end PEER`) and for all no entry covers (`sessions --kill-unlisted`);
// both audited, and refused by the daemon for the browser's own address.

import { h, replace, alert, button, label } from "./dom.js";
import { ctl } from "./ctl.js";
import { table, empty } from "./table.js";

export function sessionsTab(app) {
    const body = h("div");
    const errorSlot = h("div");
    const summary = h("span", { class: "alw-meta", "data-test": "sessions-summary" });
    const end = button("End sessions no entry covers", () => {
        replace(errorSlot);
        app.change(["sessions", "--kill-unlisted"])
                .then(report => replace(summary, `${report.killed} ended`))
                .catch(err => replace(errorSlot, alert("danger", err.message)));
    }, "danger", { "data-test": "kill-unlisted" });
    const node = h("section", { "data-test": "sessions" },
                   h("div", { class: "pf-v5-c-toolbar" },
                     h("div", { class: "pf-v5-c-toolbar__content" },
                       h("div", { class: "pf-v5-c-toolbar__content-section" },
                         h("div", { class: "pf-v5-c-toolbar__item" }, end),
                         h("div", { class: "pf-v5-c-toolbar__item" }, summary)))),
                   errorSlot, body);
    const load = () => ctl(["sessions"]).then(report => {
        replace(body, report.sessions.length
            ? table("Sessions", ["From", "To", "Covered", "Since", "Idle", ""],
                    report.sessions.map(s => [
                        h("code", {}, s.peer), h("code", {}, s.local),
                        s.covered_by
                            ? [label("covered", "green"), " by ", h("code", {}, s.covered_by.cidr), s.covered_by.comment ? ` (${s.covered_by.comment})` : ""]
                            : label("NOT covered by any entry", "red"),
                        s.since, s.idle_ms === null ? "" : `${Math.round(s.idle_ms / 1000)}s`,
                        h("span", { class: "alw-actions" }, button("End", () => {
                            replace(errorSlot);
                            app.change(["sessions", "--end", s.peer])
                                    .then(() => replace(summary, `ended ${s.peer}`))
                                    .catch(err => replace(errorSlot, alert("danger", err.message)));
                        }, "secondary", { "data-test": "end-session" })),
                    ]),
                    i => ({ "data-peer": report.sessions[i].peer }))
            : empty("No established connections to protected ports."));
    }).catch(err => replace(body, alert("danger", err.message)));
    return { title: "Sessions", node, load };
}
