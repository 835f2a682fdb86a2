// The audit log, newest first, filtered by action, and "Verify chain" (`audit verify`).

import { h, replace, alert, button, label, words } from "./dom.js";
import { ctl } from "./ctl.js";
import { table, empty } from "./table.js";

const ACTIONS = ["add", "edit", "remove", "activate", "deactivate", "reload", "confirm", "rollback",
    "emergency-start", "emergency-replace", "emergency-extend", "emergency-end", "emergency-expiry",
    "kill-unlisted", "end-session", "start", "stop", "add-list", "remove-list", "set-ports", "expire"];

export function auditTab() {
    const action = h("select", { class: "alw-input", "aria-label": "Action", "data-test": "audit-action" },
                     h("option", { value: "" }, "every action"),
                     ACTIONS.map(a => h("option", { value: a }, a)));
    const verdict = h("div", { "data-test": "verify-result" });
    const verify = button("Verify chain", () => {
        replace(verdict);
        ctl(["audit", "verify"]).then(v => replace(verdict, v.first_break
            ? alert("danger", `BROKEN at ${v.first_break.file} line ${v.first_break.line}` +
                    (v.first_break.seq === null ? "" : ` (seq ${v.first_break.seq})`) + `: ${v.first_break.why}`,
                    `${v.records} records before it are intact.`)
            : alert("success", `Intact: ${v.records} records in ${v.files.join(", ")}`, `The chain ends at ${v.last_hash}.`)))
                .catch(err => replace(verdict, alert("danger", err.message)));
    }, "secondary", { "data-test": "verify" });
    const body = h("div");
    const node = h("section", { "data-test": "audit" },
                   h("div", { class: "pf-v5-c-toolbar" },
                     h("div", { class: "pf-v5-c-toolbar__content" },
                       h("div", { class: "pf-v5-c-toolbar__content-section" },
                         h("div", { class: "pf-v5-c-toolbar__item" }, h("span", { class: "pf-v5-c-form-control" }, action)),
                         h("div", { class: "pf-v5-c-toolbar__item" }, verify)))),
                   verdict, body);
    const load = () => ctl(["audit", ...(action.value ? ["--action", action.value] : [])]).then(report => {
        const records = report.records.slice().reverse();
        replace(body, records.length
            ? table("Audit log", ["#", "Time", "Who", "Action", "Result", "Revision", "Change"],
                    records.map(r => [
                        String(r.seq), r.time,
                        `${r.actor.user}${r.actor.on_behalf_of ? ` for ${r.actor.on_behalf_of}` : ""} (${r.actor.via})`,
                        r.action,
                        r.result.status === "ok" ? label("ok", "green") : [label(r.result.status, "red"), " ", words(r.result.reason)],
                        String(r.revision),
                        h("small", { class: "alw-change" }, `${JSON.stringify(r.before)} → ${JSON.stringify(r.after)}`),
                    ]),
                    i => ({ "data-seq": String(records[i].seq), "data-action": records[i].action }))
            : empty("No matching records."));
    }).catch(err => replace(body, alert("danger", err.message)));
    action.addEventListener("change", load);
    return { title: "Audit log", node, load };
}
