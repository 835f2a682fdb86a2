// Blocked sources, busiest first, as the daemon keeps them (`blocked`).

import { h, replace, alert, label } from "./dom.js";
import { ctl } from "./ctl.js";
import { table, empty } from "./table.js";

export function blockedTab() {
    const body = h("div");
    const node = h("section", { "data-test": "blocked" }, body);
    const load = () => ctl(["blocked", "--top", "100"]).then(report => {
        replace(body,
                report.sources.length
                    ? table("Blocked sources", ["Source", "Port", "Attempts", "List", "Reason", "First", "Last"],
                            report.sources.map(s => [
                                h("code", {}, s.source),
                                s.port === 0 ? "?" : `${s.port}${s.udp ? "/udp" : ""}`,
                                [String(s.count), " ", s.would_be ? label("would be blocked (monitor)", "orange") : label("blocked", "red")],
                                s.list, s.reason, s.first_seen, s.last_seen,
                            ]),
                            i => ({ "data-source": report.sources[i].source }))
                    : empty("Nothing blocked since allowlistd started."),
                h("p", { class: "alw-meta" },
                  `${report.events_received} events received by allowlistd; the kernel sent ${report.events_sent} and held back ${report.events_suppressed} (its per-CPU budget).`));
    }).catch(err => replace(body, alert("danger", err.message)));
    return { title: "Blocked", node, load };
}
