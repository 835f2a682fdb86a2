// "Test IP": the live verdict from the kernel's maps for an address (and a port), with the
// entry that decides it.

import { h, replace, alert, label } from "./dom.js";
import { ctl } from "./ctl.js";
import { field } from "./dialog.js";

export function testTab() {
    const ip = field("test-ip", "Address", { placeholder: "198.18.1.7 or 2001:db8::7", "data-test": "test-ip" });
    const port = field("test-port", "Port", { placeholder: "every protected port", inputmode: "numeric", "data-test": "test-port" });
    const result = h("div", { "data-test": "test-result" });
    const form = h("form", { class: "pf-v5-c-form pf-m-horizontal alw-narrow", novalidate: true },
                   ip.node, port.node,
                   h("div", { class: "pf-v5-c-form__group pf-m-action" },
                     h("div", { class: "pf-v5-c-form__actions" },
                       h("button", { class: "pf-v5-c-button pf-m-primary", type: "submit", "data-test": "test-run" }, "Test"))));
    form.addEventListener("submit", ev => {
        ev.preventDefault();
        const args = ["test", ip.input.value.trim()];
        if (port.input.value.trim())
            args.push("--port", port.input.value.trim());
        replace(result);
        ctl(args).then(report => replace(result, verdicts(report)))
                .catch(err => replace(result, alert("danger", err.message)));
    });
    return { title: "Test IP", node: h("section", { "data-test": "test" }, form, result), load: () => Promise.resolve() };
}

function verdicts(report) {
    if (!report.verdicts.length)
        return alert("info", `${report.ip}: allowed: no port is protected`);
    return h("table", { class: "pf-v5-c-table pf-m-compact", role: "grid", "aria-label": "Verdicts" },
             h("thead", { class: "pf-v5-c-table__thead" },
               h("tr", { class: "pf-v5-c-table__tr" },
                 ["Port", "Verdict", "Deciding entry", "Why"].map(c => h("th", { class: "pf-v5-c-table__th", scope: "col" }, c)))),
             h("tbody", { class: "pf-v5-c-table__tbody" },
               report.verdicts.map(v => h("tr", { class: "pf-v5-c-table__tr", "data-port": String(v.port) },
                                          h("td", { class: "pf-v5-c-table__td" }, v.protocol === "udp" ? `${v.port}/udp` : String(v.port)),
                                          h("td", { class: "pf-v5-c-table__td", "data-test": "verdict" },
                                            v.allowed ? label("Allowed", "green") : label("Blocked", "red")),
                                          h("td", { class: "pf-v5-c-table__td", "data-test": "deciding" },
                                            v.entry ? [h("code", {}, v.entry.cidr), v.entry.comment ? ` (${v.entry.comment})` : ""] : "none"),
                                          h("td", { class: "pf-v5-c-table__td" }, v.explanation)))));
}
